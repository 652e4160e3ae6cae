/**
 * Teacher-forced KL divergence of each KV format against an f32 cache on generated real-shape
 * models (stories260K's head_dim of 8 is atypical): head_dim 64 (llama-100m's attention, 4 layers)
 * and 128 (Llama-3-8B's, 1 layer), vocabularies cut to 512 rows. The text is sampled from the
 * f32-cache model itself (temperature 1, fixed seeds); at every `stride`-th position the next-token
 * distribution through each cache is compared with the f32 one: KL(p_f32 || p_format), averaged.
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { generateModel, Model, ModelRunner, type KvFormat, type ModelShape } from '../../lib/index.js';

export interface KvKlRow {
  readonly model: string;
  readonly headDim: number;
  readonly kv: KvFormat;
  /** Mean KL(p_f32 || p_kv) in nats over the scored positions. */
  readonly meanKl: number;
  readonly maxKl: number;
  readonly positions: number;
}

export interface KvKlCase {
  readonly name: string;
  readonly shape: ModelShape;
  readonly layers: number;
  readonly headDim: number;
}

export const KL_CASES: readonly KvKlCase[] = [
  { name: 'llama-100m x4 layers', shape: 'llama-100m', layers: 4, headDim: 64 },
  { name: 'llama-3-8b x1 layer', shape: 'llama-3-8b', layers: 1, headDim: 128 },
];

function logSoftmax(x: Float32Array): Float64Array {
  let mx = -Infinity;
  for (const v of x) mx = Math.max(mx, v);
  let sum = 0;
  for (const v of x) sum += Math.exp(v - mx);
  const lse = mx + Math.log(sum);
  return Float64Array.from(x, (v) => v - lse);
}

function kl(p: Float64Array, q: Float64Array): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) s += Math.exp(p[i]!) * (p[i]! - q[i]!);
  return s;
}

/** Logits after every scored prefix of every sequence, through a cache of `kv`. */
async function prefixLogits(model: Model, kv: KvFormat, seqs: readonly number[][], stride: number): Promise<Float32Array[]> {
  const runner = ModelRunner.create(model, { threads: 1, kvFormat: kv });
  const reqs = seqs.flatMap((s) => {
    const out = [];
    for (let n = stride; n < s.length; n += stride) out.push({ prompt: s.slice(0, n), maxTokens: 1, stopTokens: [] });
    return out;
  });
  const outs = await runner.generate(reqs, { returnPromptLogits: true });
  return outs.map((o, i) => {
    if (o.promptLogits === undefined) throw new Error(`kv-kl: no prompt logits for request ${i}`);
    return o.promptLogits;
  });
}

/** Evaluates `formats` on every case; `log` receives one line per row. */
export async function evaluateKvKl(
  formats: readonly KvFormat[],
  options: { sequences?: number; tokens?: number; stride?: number; cases?: readonly KvKlCase[] } = {},
  log: (line: string) => void = () => {},
): Promise<KvKlRow[]> {
  const { sequences = 2, tokens = 96, stride = 6, cases = KL_CASES } = options;
  const dir = mkdtempSync(join(tmpdir(), 'fineserve-kvkl-'));
  const rows: KvKlRow[] = [];
  try {
    for (const c of cases) {
      const path = join(dir, `${c.shape}.gguf`);
      await generateModel({ shape: c.shape, layers: c.layers, vocab: 512, format: 'gguf', dtype: 'f32', seed: 7, out: path });
      const model = await Model.load(path, { precision: 'fp32' });
      const sampler = ModelRunner.create(model, { threads: 1, kvFormat: 'f32' });
      const bos = model.config.bosTokenId;
      const gen = await sampler.generate(
        Array.from({ length: sequences }, (_, i) => ({ prompt: [bos], maxTokens: tokens, stopTokens: [], sampling: { temperature: 1, seed: 500 + i } })),
      );
      const seqs = gen.map((g) => [bos, ...g.tokens]);
      const ref = (await prefixLogits(model, 'f32', seqs, stride)).map(logSoftmax);
      for (const kv of formats) {
        const got = (await prefixLogits(model, kv, seqs, stride)).map(logSoftmax);
        const kls = got.map((q, i) => kl(ref[i]!, q));
        const row: KvKlRow = { model: c.name, headDim: c.headDim, kv, meanKl: kls.reduce((a, b) => a + b, 0) / kls.length, maxKl: Math.max(...kls), positions: kls.length };
        rows.push(row);
        log(`${c.name.padEnd(22)} d${c.headDim} ${kv.padEnd(5)} KL mean ${row.meanKl.toExponential(3)} max ${row.maxKl.toExponential(3)} (${row.positions} positions)`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
