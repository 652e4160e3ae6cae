/**
 * A short profile at load: one prefill, then decodes of one and of four sequences, timed, so a
 * model's latency model starts from this device's numbers (prefill cost per token, a decode
 * step's fixed cost and its cost per extra sequence: what placement weighs before any traffic),
 * and the first user request does not pay page faults.
 * @module
 */
import type { Executor } from './executor.js';

/** What the warm-up measured, ms. */
export interface WarmUp {
  readonly prefillTokenMs: number;
  readonly decodeStepMs: number;
  /** A decode step of {@link BATCH} sequences, when the KV memory allowed one. */
  readonly batchDecodeStepMs?: number;
  readonly batch?: number;
}

const BATCH = 4;

/** Runs the warm-up on fresh sequence ids from `seqId` and frees everything it took. */
export async function warmUp(executor: Executor, maxContext: number, seqId: number): Promise<WarmUp> {
  const prompt = Math.max(1, Math.min(32, maxContext - 3));
  const total = prompt + 2;
  const { pool, kvModel, tokensPerBlock } = executor;
  const perSeq = Math.ceil(total / tokensPerBlock);
  const tables: Uint32Array[] = [];
  const added: number[] = [];
  try {
    for (let i = 0; i < BATCH; i++) {
      const got = pool.alloc(kvModel, perSeq);
      if (!got.ok) break;
      tables.push(got.blocks);
    }
    // Too little KV memory for 34 tokens: no measurement, the latency model learns from traffic.
    if (tables.length === 0) return { prefillTokenMs: 0.05, decodeStepMs: 1 };
    const step = (seqs: number, n: number, position: number) =>
      executor.step(Array.from({ length: seqs }, (_, i) => ({ seqId: seqId + i, tokens: new Array<number>(n).fill(0), position, blocks: tables[i]!, sample: true })));
    for (let i = 0; i < tables.length; i++) {
      executor.addSequence(seqId + i, new Array<number>(prompt).fill(0), {});
      added.push(seqId + i);
    }
    let t = performance.now();
    await step(1, prompt, 0);
    const prefillMs = performance.now() - t;
    await step(1, 1, prompt);
    t = performance.now();
    await step(1, 1, prompt + 1);
    const decodeStepMs = performance.now() - t;
    const prefillTokenMs = Math.max(prefillMs - decodeStepMs, 0) / prompt || prefillMs / prompt;
    if (tables.length < BATCH) return { prefillTokenMs, decodeStepMs };
    // The others catch up to the first (their prefill as one step), then one decode of all of them.
    await executor.step(Array.from({ length: BATCH - 1 }, (_, k) => ({ seqId: seqId + k + 1, tokens: new Array<number>(prompt + 1).fill(0), position: 0, blocks: tables[k + 1]!, sample: true })));
    t = performance.now();
    await step(BATCH, 1, prompt + 1);
    return { prefillTokenMs, decodeStepMs, batchDecodeStepMs: performance.now() - t, batch: BATCH };
  } finally {
    if (!executor.disposed) {
      for (const id of added) executor.removeSequence(id);
      for (const blocks of tables) pool.free(kvModel, blocks);
    }
  }
}
