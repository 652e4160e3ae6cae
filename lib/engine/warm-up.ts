/**
 * One short prefill and two decodes at load, timed, so a model's latency model starts from this
 * machine's numbers rather than a guess, and the first user request does not pay page faults.
 * @module
 */
import type { Executor } from './executor.js';

/** What the warm-up measured, ms. */
export interface WarmUp {
  readonly prefillTokenMs: number;
  readonly decodeStepMs: number;
}

/** Runs the warm-up on a fresh sequence id and frees everything it took. */
export async function warmUp(executor: Executor, maxContext: number, seqId: number): Promise<WarmUp> {
  const prompt = Math.max(1, Math.min(32, maxContext - 3));
  const total = prompt + 2;
  const { pool, kvModel, tokensPerBlock } = executor;
  const got = pool.alloc(kvModel, Math.ceil(total / tokensPerBlock));
  // Too little KV memory for 34 tokens: no measurement, the latency model learns from traffic.
  if (!got.ok) return { prefillTokenMs: 0.05, decodeStepMs: 1 };
  const blocks = got.blocks;
  try {
    executor.addSequence(seqId, new Array<number>(prompt).fill(0), {});
    const one = (n: number, position: number) => executor.step([{ seqId, tokens: new Array<number>(n).fill(0), position, blocks, sample: true }]);
    let t = performance.now();
    await one(prompt, 0);
    const prefillMs = performance.now() - t;
    await one(1, prompt);
    t = performance.now();
    await one(1, prompt + 1);
    const decodeStepMs = performance.now() - t;
    return { prefillTokenMs: Math.max(prefillMs - decodeStepMs, 0) / prompt || prefillMs / prompt, decodeStepMs };
  } finally {
    if (!executor.disposed) {
      executor.removeSequence(seqId);
      pool.free(kvModel, blocks);
    }
  }
}
