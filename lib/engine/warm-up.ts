/**
 * One short prefill and two decodes at load, timed, so a model's latency model starts from this
 * machine's numbers rather than a guess, and the first user request does not pay page faults.
 * @module
 */
import type { KvPool } from '../kv-pool.js';
import type { NativeExecutor } from '../native/addon-types.js';

/** What the warm-up measured, ms. */
export interface WarmUp {
  readonly prefillTokenMs: number;
  readonly decodeStepMs: number;
}

/** Runs the warm-up on a fresh sequence id and frees everything it took. */
export async function warmUp(executor: NativeExecutor, pool: KvPool, kvModel: number, tokensPerBlock: number, maxContext: number, seqId: number): Promise<WarmUp> {
  const prompt = Math.max(1, Math.min(32, maxContext - 3));
  const total = prompt + 2;
  const got = pool.alloc(kvModel, Math.ceil(total / tokensPerBlock));
  // Too little KV memory for 34 tokens: no measurement, the latency model learns from traffic.
  if (!got.ok) return { prefillTokenMs: 0.05, decodeStepMs: 1 };
  const blocks = got.blocks;
  try {
    executor.addSequence(seqId, new Int32Array(prompt), {});
    const one = (n: number, position: number): Promise<unknown> =>
      executor.step(
        Uint32Array.of(seqId),
        new Int32Array(n),
        Uint32Array.of(n),
        Uint32Array.of(position),
        blocks.subarray(0, Math.ceil((position + n) / tokensPerBlock)),
        Uint32Array.of(Math.ceil((position + n) / tokensPerBlock)),
        Uint8Array.of(1),
        false,
      );
    let t = performance.now();
    await one(prompt, 0);
    const prefillMs = performance.now() - t;
    await one(1, prompt);
    t = performance.now();
    await one(1, prompt + 1);
    const decodeStepMs = performance.now() - t;
    return { prefillTokenMs: Math.max(prefillMs - decodeStepMs, 0) / prompt || prefillMs / prompt, decodeStepMs };
  } finally {
    executor.removeSequence(seqId);
    pool.free(kvModel, blocks);
  }
}
