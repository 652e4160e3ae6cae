/**
 * The measurements: prefill and decode throughput of one engine, timed around its public
 * generate call, repeated, median taken. Decode throughput is differential: generating G tokens
 * minus generating 1 token (same prompts), so prefill and setup cancel out:
 * tok/s = sequences * (G - 1) / (median T(G) - median T(1)).
 * @module
 */
import { median } from '../../lib/stats.js';
import type { Engine } from './engines.js';

// Re-exported: the serve-memory benches take it from here.
export { median };

/** Deterministic prompts: BOS then pseudo-random ids in [3, vocab). */
export function makePrompts(count: number, length: number, vocab: number, seed: number): number[][] {
  let state = (seed * 2654435761 + 12345) >>> 0;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state;
  };
  return Array.from({ length: count }, () => [1, ...Array.from({ length: length - 1 }, () => 3 + (next() % (vocab - 3)))]);
}

/** Seconds one generate call takes, and its tokens. */
export async function timeGenerate(
  engine: Engine,
  prompts: readonly (readonly number[])[],
  maxTokens: number,
): Promise<{ seconds: number; tokens: number[][] }> {
  await engine.prepare(prompts.length, Math.max(...prompts.map((p) => p.length)) + maxTokens);
  const t0 = performance.now();
  const tokens = await engine.generate(prompts, maxTokens, []);
  const seconds = (performance.now() - t0) / 1000;
  for (const t of tokens) {
    if (t.length !== maxTokens) throw new Error(`${engine.name}: generated ${t.length} tokens, asked for ${maxTokens}`);
  }
  return { seconds, tokens };
}

/** One metric for both engines: raw times per engine and the throughput. */
export interface MetricResult {
  /** tokens/s */
  readonly fineserve: number;
  /** tokens/s; null when fineserve ran alone (--smoke). */
  readonly peer: number | null;
  /** fineserve / peer: above 1, fineserve is faster; null when fineserve ran alone. */
  readonly ratio: number | null;
  readonly detail: Record<string, unknown>;
}

/** fineserve and the peer, or fineserve alone (a smoke run, without the peer's install). */
export type Engines = readonly [Engine, Engine] | readonly [Engine];

/**
 * Runs `work` for both engines `reps` times after one warm-up each, alternating which goes first,
 * and returns each engine's list of results (the second undefined when fineserve runs alone).
 */
export async function alternate<T>(engines: Engines, reps: number, work: (e: Engine) => Promise<T>): Promise<[T[], T[] | undefined]> {
  const out: T[][] = engines.map(() => []);
  for (const e of engines) await work(e);
  for (let r = 0; r < reps; r++) {
    const order = engines.length === 1 ? [0] : r % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) out[i]!.push(await work(engines[i]!));
  }
  return [out[0]!, out[1]];
}

/** How far two engines' greedy outputs agree (random-weight models have near-ties). */
export function agreement(a: readonly (readonly number[])[], b: readonly (readonly number[])[]): { identical: number; meanCommonPrefix: number } {
  let identical = 0;
  let prefix = 0;
  a.forEach((x, i) => {
    const y = b[i]!;
    let k = 0;
    while (k < x.length && k < y.length && x[k] === y[k]) k++;
    prefix += k;
    if (k === x.length && k === y.length) identical++;
  });
  return { identical: identical / a.length, meanCommonPrefix: prefix / a.length };
}

export async function prefill(engines: Engines, reps: number, prompt: readonly number[]): Promise<MetricResult> {
  const [fs, peer] = await alternate(engines, reps, async (e) => (await timeGenerate(e, [prompt], 1)).seconds);
  const f = prompt.length / median(fs);
  const p = peer === undefined ? null : prompt.length / median(peer);
  return { fineserve: f, peer: p, ratio: p === null ? null : f / p, detail: { promptTokens: prompt.length, seconds: { fineserve: fs, peer: peer ?? null } } };
}

export async function decode(engines: Engines, reps: number, prompts: readonly (readonly number[])[], tokens: number): Promise<MetricResult> {
  const outputs: number[][][] = [[], []];
  const [long0, long1] = await alternate(engines, reps, async (e) => {
    const r = await timeGenerate(e, prompts, tokens);
    outputs[e === engines[0] ? 0 : 1] = r.tokens;
    return r.seconds;
  });
  const [short0, short1] = await alternate(engines, reps, async (e) => (await timeGenerate(e, prompts, 1)).seconds);
  const rate = (long: number[], short: number[]) => (prompts.length * (tokens - 1)) / Math.max(1e-9, median(long) - median(short));
  const f = rate(long0, short0);
  const p = long1 === undefined || short1 === undefined ? null : rate(long1, short1);
  return {
    fineserve: f,
    peer: p,
    ratio: p === null ? null : f / p,
    detail: {
      sequences: prompts.length,
      promptTokens: prompts[0]!.length,
      generatedTokens: tokens,
      seconds: { fineserve: { generate: long0, first: short0 }, peer: p === null ? null : { generate: long1, first: short1 } },
      greedyAgreement: p === null ? null : agreement(outputs[0]!, outputs[1]!),
    },
  };
}
