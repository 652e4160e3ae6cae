/**
 * The interface between the local scheduler's policies and whatever drives them: the simulator
 * today, the engine's step loop later (issue #6). A policy is a pure function from a snapshot of
 * one model replica to the decision for its next iteration; it keeps no state of its own, so the
 * same inputs give the same decision on any driver.
 * @module
 */
import type { LatencyModel } from '../latency-model.js';
import type { Slo } from '../types.js';

/** A request queued at the scheduler, not yet in the engine. */
export interface WaitingRequest {
  readonly id: number;
  readonly arrivalMs: number;
  readonly promptTokens: number;
  /** arrivalMs + the TTFT SLO: the first token must come by then. */
  readonly deadlineMs: number;
  /** Higher is more important; default 0. */
  readonly priority: number;
}

/** A sequence inside the engine: waiting for its first chunk, prefilling, or decoding. */
export interface RunningSequence {
  readonly id: number;
  readonly arrivalMs: number;
  readonly deadlineMs: number;
  readonly priority: number;
  readonly promptTokens: number;
  /** Output tokens sampled so far. */
  readonly decodedTokens: number;
  /** Tokens whose K/V is in the cache. */
  readonly computedTokens: number;
  /**
   * Tokens that must be in the cache before it decodes: the prompt, or after a preemption by
   * recompute the prompt plus what it had decoded.
   */
  readonly targetTokens: number;
  /** KV blocks it holds. */
  readonly blocks: number;
  /** Its first token has been emitted (TTFT is settled). */
  readonly started: boolean;
}

/** Everything a policy sees about one model replica at the start of an iteration. */
export interface ModelSnapshot {
  readonly nowMs: number;
  /** Scheduler queue, in arrival order. */
  readonly waiting: readonly WaitingRequest[];
  /** Engine sequences, in admission order. */
  readonly running: readonly RunningSequence[];
  readonly kv: {
    /** Blocks this model could allocate now (its free blocks plus free shared memory it may take). */
    readonly freeBlocks: number;
    readonly tokensPerBlock: number;
  };
  readonly limits: {
    /** Most sequences in the engine (the plan's SLO-limited batch, vLLM's `max_num_seqs`). */
    readonly maxBatch: number;
    /** Most tokens in one iteration (chunked prefill budget, `max_num_batched_tokens`). */
    readonly maxBatchTokens: number;
    /** The plan's rate-limited batch (advisory). */
    readonly minBatch: number;
  };
  readonly slo: Slo;
  /** Predictions for this replica on its device (static for the reference, online for ours), its own steps only. */
  readonly latency: LatencyModel;
  /**
   * Milliseconds the co-located models' steps add to each of this replica's iterations (a
   * time-sliced device: the engine on the CPU). Absent: 0, nothing runs between its steps.
   */
  readonly othersMs?: number;
  /** The reference's static figure: batch-1 prefill milliseconds per prompt token from the profile. */
  readonly ttftPerTokenMs: number;
  /**
   * A co-located model is decoding and this model's steps delay its tokens (time-sliced
   * devices: the engine on the CPU). Its TPOT is then in `slo.tpotMs`, and the TPOT guard applies
   * even while this model has nothing decoding. Absent: only this model's own decodes count.
   */
  readonly coLocatedDecoding?: boolean;
  /**
   * The longest this iteration may make the decoding sequences wait for their next token with
   * every one's mean TPOT, projected to its end at the current decode pace, still within its SLO
   * (TPOT is a mean, so a sequence ahead of its budget absorbs one long step). Absent: the TPOT
   * SLO itself, every step.
   */
  readonly stepLimitMs?: number;
}

/** A prefill chunk: `tokens` more of sequence `id`'s target enter the cache this iteration. */
export interface PrefillChunk {
  readonly id: number;
  readonly tokens: number;
}

/** What one iteration does. Ids refer to the snapshot's waiting (admit, drop) or running sequences. */
export interface IterationDecision {
  /** Waiting requests that enter the engine now (their first chunk may run in this iteration). */
  readonly admit: readonly number[];
  /** Waiting requests given up: they cannot meet their deadline. Counted as SLO misses. */
  readonly drop: readonly number[];
  /** Engine sequences evicted by recompute before this iteration: their blocks are freed. */
  readonly preempt: readonly number[];
  readonly prefill: readonly PrefillChunk[];
  /** Decoding sequences that produce one token each. */
  readonly decode: readonly number[];
}

/** A local scheduling policy. Pure and deterministic. */
export type LocalPolicy = (snapshot: ModelSnapshot) => IterationDecision;

/** Blocks needed to hold `tokens` tokens. */
export function blocksFor(tokens: number, tokensPerBlock: number): number {
  return Math.ceil(tokens / tokensPerBlock);
}
