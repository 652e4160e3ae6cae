/**
 * Sequence: one request inside the engine, from queueing to its end. It owns its block table into
 * the KV Slab and the counters the local scheduler reads (prompt, computed, decoded tokens).
 * Every known token (prompt, then each sampled one) is in `tokens`; the KV cache holds the first
 * `computed` of them. A step feeds `tokens[computed .. computed + n)` and samples when that
 * reaches the end, so a decode is a chunk of one and recompute after preemption is a prefill of
 * everything known.
 * @module
 */
import type { GenerationRun, RequestTimings } from '../request.js';
import type { SamplingOptions } from '../runner.js';
import type { StreamDecoder } from '../tokenizer.js';
import type { StopMatcher } from './stop.js';

/** Where a sequence is in its life. */
export type SequenceStatus = 'waiting' | 'running' | 'finished';

/** See the module comment. */
export class Sequence {
  readonly id: number;
  readonly run: GenerationRun;
  readonly arrivalMs: number;
  readonly priority: number;
  readonly promptTokens: number;
  readonly maxTokens: number;
  readonly sampling: SamplingOptions;
  readonly stopTokens: ReadonlySet<number>;
  readonly decoder: StreamDecoder;
  readonly stop: StopMatcher;
  readonly onToken: ((chunk: import('../request.js').GenerationChunk) => void) | undefined;
  /** Prompt then generated tokens. */
  readonly tokens: number[];
  /** Block table: blocks[i] holds tokens [i·tpb, (i+1)·tpb). */
  blocks: number[] = [];
  /** Tokens whose K/V is in the cache. */
  computed = 0;
  /** Tokens to have in the cache before decoding: the prompt, or everything known after a preemption. */
  target: number;
  status: SequenceStatus = 'waiting';
  /** Registered with the executor (its sampler state lives there). */
  inExecutor = false;
  /** The scheduler said it cannot meet its TTFT deadline; it now runs best effort. */
  deferred = false;
  preemptions = 0;
  /** Set by an abort or a failing callback; acted on between steps. */
  pendingEnd: { reason: 'abort' | 'error'; error?: Error } | undefined;
  admittedMs: number | undefined;
  firstTokenMs: number | undefined;
  lastTokenMs: number | undefined;
  text = '';
  readonly logprobs: number[] = [];

  constructor(init: {
    id: number;
    run: GenerationRun;
    arrivalMs: number;
    priority: number;
    prompt: readonly number[];
    maxTokens: number;
    sampling: SamplingOptions;
    stopTokens: ReadonlySet<number>;
    decoder: StreamDecoder;
    stop: StopMatcher;
    onToken: Sequence['onToken'];
  }) {
    this.id = init.id;
    this.run = init.run;
    this.arrivalMs = init.arrivalMs;
    this.priority = init.priority;
    this.promptTokens = init.prompt.length;
    this.maxTokens = init.maxTokens;
    this.sampling = init.sampling;
    this.stopTokens = init.stopTokens;
    this.decoder = init.decoder;
    this.stop = init.stop;
    this.onToken = init.onToken;
    this.tokens = [...init.prompt];
    this.target = init.prompt.length;
  }

  /**
   * Its prompt (or, after a preemption, everything known) is in the cache and its last token
   * was sampled: each step now feeds it one token.
   */
  get isDecoding(): boolean {
    return this.computed >= this.target;
  }

  /** Output tokens sampled so far. */
  get decoded(): number {
    return this.tokens.length - this.promptTokens;
  }

  /** The generated ids. */
  generated(): number[] {
    return this.tokens.slice(this.promptTokens);
  }

  timings(nowMs: number): RequestTimings {
    const n = this.decoded;
    return {
      queueMs: (this.admittedMs ?? nowMs) - this.arrivalMs,
      ttftMs: this.firstTokenMs === undefined ? undefined : this.firstTokenMs - this.arrivalMs,
      tpotMs: n >= 2 && this.firstTokenMs !== undefined && this.lastTokenMs !== undefined ? (this.lastTokenMs - this.firstTokenMs) / (n - 1) : undefined,
      e2eMs: nowMs - this.arrivalMs,
    };
  }
}
