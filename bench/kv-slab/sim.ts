/**
 * The replay's model engines and requests: per-model waiting queues (first come, first served,
 * preempted requests first) and each request's progress and block table.
 * @module
 */
import type { TraceRequest } from '../kv-trace.js';
import type { BlockHolder } from './block-index.js';

/** One model's engine: its geometry as stored and its waiting queue. */
export class ModelSim {
  /** Preempted requests, most recent last: they resume first, as vLLM prepends them. */
  readonly resumed: Req[] = [];
  waiting: Req[] = [];
  head = 0;

  constructor(
    readonly index: number,
    readonly id: number,
    readonly tokensPerBlock: number,
    readonly blockBytes: number,
    readonly tokenBytes: number,
  ) {}

  get queued(): number {
    return this.resumed.length + this.waiting.length - this.head;
  }

  /** The queue in service order. */
  *queue(): Generator<Req> {
    for (let i = this.resumed.length - 1; i >= 0; i--) yield this.resumed[i] as Req;
    for (let i = this.head; i < this.waiting.length; i++) yield this.waiting[i] as Req;
  }

  /** The request served next, if any. */
  first(): Req | undefined {
    return this.resumed.length > 0 ? this.resumed[this.resumed.length - 1] : this.waiting[this.head];
  }

  /** Removes the first `n` requests of the queue (the ones just admitted). */
  shift(n: number): void {
    const fromResumed = Math.min(n, this.resumed.length);
    this.resumed.length -= fromResumed;
    this.head += n - fromResumed;
  }

  /** Drops requests that waited `deadline` steps; returns how many. */
  expire(step: number, deadline: number): number {
    const keep = (r: Req): boolean => step - r.enqueuedStep < deadline;
    const before = this.queued;
    const resumed = this.resumed.filter(keep);
    this.resumed.length = 0;
    this.resumed.push(...resumed);
    // Arrival order means only a prefix of `waiting` can have expired.
    while (this.head < this.waiting.length && !keep(this.waiting[this.head] as Req)) this.head++;
    if (this.head > 4096) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    return before - this.queued;
  }
}

export class Req implements BlockHolder {
  generated = 0;
  /** Tokens whose KV is stored: input + generated - 1 while running (the last token is not yet written). */
  stored = 0;
  /** The block table: block ids in token order. Compaction rewrites ids in place. */
  blocks: number[] = [];
  enqueuedStep: number;
  preemptions = 0;
  preempted = false;

  constructor(
    readonly t: TraceRequest,
    readonly m: ModelSim,
  ) {
    this.enqueuedStep = t.arrivalStep;
  }

  /**
   * Blocks a (re)admission takes: the prompt, plus what was generated before a preemption, plus
   * the one-token lookahead for its first decode.
   */
  admitBlocks(): number {
    return Math.ceil((this.t.input + this.generated + 1) / this.m.tokensPerBlock);
  }
}
