/**
 * `npm run bench:quant-quality`: the quality table of every precision on stories260K (perplexity of
 * eval.txt vs fp32, weight and KV bytes), and the teacher-forced KL divergence of every KV format
 * against an f32 cache on generated real-shape models (head_dim 64 and 128), written to
 * bench/results/quant-quality.json.
 *
 *   node --import tsx bench/quant-quality.ts [--smoke] [--out FILE]
 *
 * --smoke: three rows (fp32, w8a8, GGUF Q8_0) and a few KL positions on a 1-layer head_dim-64
 * model, to build/quant-quality-smoke.json: checks it works.
 * Exits non-zero when a row's perplexity is not a finite number.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { evaluateKvKl, KL_CASES } from './quant/kv-kl.js';
import { EVAL_WINDOW, evaluateQuality, QUALITY_CASES } from './quant/quality.js';

const { values: args } = parseArgs({ options: { smoke: { type: 'boolean', default: false }, out: { type: 'string' } } });
const SMOKE_CASES = ['fp32', 'w8a8', 'GGUF Q8_0'];
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const cases = args.smoke ? QUALITY_CASES.filter((c) => SMOKE_CASES.includes(c.name)) : QUALITY_CASES;
const rows = await evaluateQuality(ROOT, cases, (line) => process.stderr.write(`${line}\n`));
const KL_FORMATS = ['f16', 'bf16', 'fp8', 'int8', 'int4'] as const;
const klOptions = args.smoke ? { sequences: 1, tokens: 12, stride: 6, cases: [{ ...KL_CASES[0]!, name: 'llama-100m x1 layer', layers: 1 }] } : {};
const kl = await evaluateKvKl(args.smoke ? ['int4'] : KL_FORMATS, klOptions, (line) => process.stderr.write(`${line}\n`));
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
      kvKlDescription:
        'Teacher-forced KL(p_f32-cache || p_format) in nats, mean over positions, on generated GGUF models (fp32 weights, vocab 512) with Llama attention shapes; the text is sampled from the model with an f32 cache (temperature 1).',
      kvKl: kl,
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
console.log('| model | head_dim | KV | mean KL vs f32 KV (nats) | max |');
console.log('|---|---|---|---|---|');
for (const r of kl) console.log(`| ${r.model} | ${r.headDim} | ${r.kv} | ${r.meanKl.toExponential(2)} | ${r.maxKl.toExponential(2)} |`);
const bad = rows.filter((r) => !Number.isFinite(r.perplexity));
if (kl.length === 0 || kl.some((r) => !Number.isFinite(r.meanKl))) {
  console.error('quant-quality: FAILED: a KV KL divergence is missing or not finite');
  process.exitCode = 1;
}
if (rows.length !== cases.length || bad.length > 0) {
  console.error(`quant-quality: FAILED: ${rows.length} of ${cases.length} rows${bad.length ? `; no perplexity for ${bad.map((r) => r.name).join(', ')}` : ''}`);
  process.exitCode = 1;
}
