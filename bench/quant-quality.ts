/**
 * `npm run bench:quant-quality`: the quality table of every precision on stories260K (perplexity of
 * eval.txt vs fp32, weight and KV bytes), written to bench/results/quant-quality.json.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { EVAL_WINDOW, evaluateQuality } from './quant/quality.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const rows = await evaluateQuality(ROOT, undefined, (line) => process.stderr.write(`${line}\n`));
const out = join(ROOT, 'bench', 'results', 'quant-quality.json');
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
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
