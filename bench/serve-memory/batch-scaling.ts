/**
 * Where CPU batching stops paying: one model alone on an ample KV Slab, B requests at once (same
 * prompt length, same output length), the decode step time and token rate against B. A KV pool
 * that admits more sequences only raises throughput while tokens/s still climbs with B.
 * @module
 */
import { Engine } from '../../lib/engine.js';
import type { PrecisionName } from '../../lib/precision.js';
import { promptFor } from '../../lib/sim/policy-comparison.js';

export interface BatchPoint {
  readonly precision: PrecisionName;
  readonly batch: number;
  /** One decode step of B sequences (alone on the device), while all B decode. */
  readonly stepMs: number;
  readonly tokensPerSecond: number;
  /** tokens/s over batch 1's. */
  readonly speedup: number;
}

export async function batchScaling(o: { source: string; precision: PrecisionName; threads: number; batches: readonly number[]; promptTokens: number; outputTokens: number }): Promise<BatchPoint[]> {
  const engine = await Engine.create({ threads: o.threads, slabBytes: 256 * 2 ** 20 });
  try {
    await engine.loadModel({ id: 'm', source: o.source, precision: o.precision, maxContext: o.promptTokens + o.outputTokens + 1, maxBatch: Math.max(...o.batches) });
    const prompt = promptFor(engine.tokenizer('m').vocabSize);
    const points: BatchPoint[] = [];
    // A discarded batch first: the first steps pay for the JIT and cold caches.
    await engine.generate({ model: 'm', tokens: prompt({ id: 99, model: 'm', arrivalMs: 0, promptTokens: o.promptTokens, outputTokens: 0 }), maxTokens: 8, stopTokens: [] }).result;
    for (const batch of o.batches) {
      // Decode steps only: the window from the last request's first token to the first request's
      // end, when all B sequences decode together (before it, prefill chunks share the steps).
      const times: number[][] = Array.from({ length: batch }, () => []);
      const runs = Array.from({ length: batch }, (_, i) =>
        engine.generate({ model: 'm', tokens: prompt({ id: 100 + i, model: 'm', arrivalMs: 0, promptTokens: o.promptTokens, outputTokens: 0 }), maxTokens: o.outputTokens, stopTokens: [], onToken: () => void times[i]!.push(performance.now()) }),
      );
      await Promise.all(runs.map((r) => r.result));
      const from = Math.max(...times.map((t) => t[0]!));
      const to = Math.min(...times.map((t) => t.at(-1)!));
      const steps = times.map((t) => t.filter((x) => x > from && x <= to).length);
      const stepMs = (to - from) / Math.max(1, Math.min(...steps));
      const tokensPerSecond = (batch * 1000) / stepMs;
      points.push({ precision: o.precision, batch, stepMs, tokensPerSecond, speedup: tokensPerSecond / (points[0]?.tokensPerSecond ?? tokensPerSecond) });
    }
    return points;
  } finally {
    await engine.close();
  }
}
