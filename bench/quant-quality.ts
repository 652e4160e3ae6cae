/**
 * `npm run bench:quant-quality`: the quality table of every precision on stories260K (perplexity of
 * eval.txt vs fp32, weight and KV bytes), written to bench/results/quant-quality.json.
 *
 *   node --import tsx bench/quant-quality.ts [--smoke] [--out FILE]
 *
 * --smoke: three rows (fp32, w8a8, GGUF Q8_0) to build/quant-quality-smoke.json: checks it works.
 * Exits non-zero when a row's perplexity is not a finite number.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { EVAL_WINDOW, evaluateQuality, QUALITY_CASES } from './quant/quality.js';

const { values: args } = parseArgs({ options: { smoke: { type: 'boolean', default: false }, out: { type: 'string' } } });
const SMOKE_CASES = ['fp32', 'w8a8', 'GGUF Q8_0'];
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const cases = args.smoke ? QUALITY_CASES.filter((c) => SMOKE_CASES.includes(c.name)) : QUALITY_CASES;
const rows = await evaluateQuality(ROOT, cases, (line) => process.stderr.write(`${line}\n`));
const out = resolve(ROOT, args.out ?? (args.smoke ? 'build/quant-quality-smoke.json' : 'bench/results/quant-quality.json'));
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  `${JSON.stringify(
    {
      benchmark: 'quant-quality',
      description:
        'Perplexity of ../shared/fixtures/stories260K/eval.txt (HF tokenizer, BOS + 1203 tokens, scored in windows of 512 sharing one token) per precision, loaded from the HF folder (PTQ at load) or from GGUF files fineserve wrote; deltaPercent against fp32 with f32 KV. Calibration: 8 x 128 tokens sampled from the fp32 model.',
      window: EVAL_WINDOW,
      date: new Date().toISOString(),
      rows,
    },
    null,
    2,
  )}\n`,
);
console.log(`wrote ${out}`);
console.log('| precision | KV | perplexity | vs fp32 | weight bytes | KV bytes/token |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.name} | ${r.kv} | ${r.perplexity.toFixed(4)} | ${r.deltaPercent >= 0 ? '+' : ''}${r.deltaPercent.toFixed(2)} % | ${r.weightBytes} | ${r.kvBytesPerToken} |`);
}
const bad = rows.filter((r) => !Number.isFinite(r.perplexity));
if (rows.length !== cases.length || bad.length > 0) {
  console.error(`quant-quality: FAILED: ${rows.length} of ${cases.length} rows${bad.length ? `; no perplexity for ${bad.map((r) => r.name).join(', ')}` : ''}`);
  process.exitCode = 1;
}
