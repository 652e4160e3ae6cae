/**
 * BlockManager: one model's view of its device's KV pool, and the only writer of its sequences'
 * block tables: it allocates a step's blocks in one pool call, frees a finished sequence's, and
 * takes a preempted one's back.
 * @module
 */
import type { KvPool } from '../kv-pool.js';
import type { Sequence } from './sequence.js';

/** One chunk of a step: `n` tokens of `seq` from `seq.computed`. */
export interface StepChunk {
  readonly seq: Sequence;
  readonly n: number;
}

/** See the module comment. */
export class BlockManager {
  readonly pool: KvPool;
  readonly kvModel: number;
  readonly tokensPerBlock: number;

  constructor(pool: KvPool, kvModel: number, tokensPerBlock: number) {
    this.pool = pool;
    this.kvModel = kvModel;
    this.tokensPerBlock = tokensPerBlock;
  }

  /** Blocks the model could allocate now (its reserve plus free shared memory it may take). */
  available(): number {
    return this.pool.availableBlocks(this.kvModel);
  }

  /** Blocks that hold `tokens` tokens. */
  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.tokensPerBlock);
  }

  /**
   * Gives every chunk the blocks it needs for `computed + n` tokens, in one pool call, and reports
   * the model's live tokens with it. Chunks whose blocks are not available are left out (the
   * policy counted on memory that is gone); returns those that can run.
   */
  allocate(chunks: readonly StepChunk[], liveTokens: number): StepChunk[] {
    const allocs = chunks.map((c) => ({ model: this.kvModel, count: Math.max(0, this.blocksFor(c.seq.computed + c.n) - c.seq.blockTable.length) }));
    const r = this.pool.step({ allocs, liveTokens: [{ model: this.kvModel, tokens: liveTokens }] });
    const ok: StepChunk[] = [];
    chunks.forEach((c, i) => {
      const got = r.allocs[i]!;
      if (!got.ok) return;
      for (const b of got.blocks) c.seq.blockTable.push(b);
      ok.push(c);
    });
    return ok;
  }

  /** Returns a sequence's blocks to the pool. */
  free(seq: Sequence): void {
    if (seq.blockTable.length > 0) this.pool.free(this.kvModel, seq.blockTable);
    seq.blockTable.length = 0;
  }

  /** Preemption by recompute: its blocks go back now, its known tokens become its next prefill. */
  preempt(seq: Sequence): void {
    this.free(seq);
    seq.resetForRecompute();
  }
}
