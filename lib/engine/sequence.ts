/**
 * Sequence: one request inside the engine, from queueing to its end. Every known token (prompt,
 * then each sampled one) is in `tokens`; the KV cache holds the first `computed` of them. A step
 * feeds `tokens[computed .. computed + n)` and samples when that reaches the end, so a decode is a
 * chunk of one and recompute after preemption is a prefill of everything known.
 *
 * Its state changes only through its own mutators, each named for the event it records; its
 * block table is written only by the BlockManager.
 * @module
 */
import type { SamplingOptions } from '../data-types.js';
import type { GenerationChunk, GenerationRun, RequestTimings } from '../request.js';
import type { StreamDecoder } from '../tokenizer.js';
import type { StopMatcher } from './stop.js';

/** Where a sequence is in its life. */
export type SequenceStatus = 'waiting' | 'running' | 'finished';

/** Why a sequence must end at the next step boundary. */
export interface PendingEnd {
  readonly reason: 'abort' | 'error';
  readonly error?: Error;
}

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
  readonly onToken: ((chunk: GenerationChunk) => void) | undefined;
  /** Its latency objectives: the request's own where it gave them, else its model's. */
  readonly slo: { readonly ttftMs?: number; readonly tpotMs?: number };
  /** Prompt then generated tokens. */
  readonly #tokens: number[];
  readonly #logprobs: number[] = [];
  /** Block table: blockTable[i] holds tokens [i·tpb, (i+1)·tpb). Written by the BlockManager only. */
  readonly blockTable: number[] = [];
  #computed = 0;
  #target: number;
  #status: SequenceStatus = 'waiting';
  #inExecutor = false;
  #deferred = false;
  #preemptions = 0;
  #pendingEnd: PendingEnd | undefined;
  #admittedMs: number | undefined;
  #firstTokenMs: number | undefined;
  #lastTokenMs: number | undefined;
  #text = '';

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
    slo: Sequence['slo'];
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
    this.slo = init.slo;
    this.#tokens = [...init.prompt];
    this.#target = init.prompt.length;
  }

  get tokens(): readonly number[] {
    return this.#tokens;
  }
  /** Tokens whose K/V is in the cache. */
  get computed(): number {
    return this.#computed;
  }
  /** Tokens to have in the cache before decoding: the prompt, or everything known after a preemption. */
  get target(): number {
    return this.#target;
  }
  get status(): SequenceStatus {
    return this.#status;
  }
  /** Registered with the executor (its sampler state lives there). */
  get inExecutor(): boolean {
    return this.#inExecutor;
  }
  /**
   * Nothing of it has run: no executor state (sampler, KV), no output, no pending end. Such a
   * request can move to another replica of its model and start there as if it had been sent there.
   */
  get movable(): boolean {
    return this.#status === 'waiting' && !this.#inExecutor && this.decoded === 0 && this.#preemptions === 0 && this.#pendingEnd === undefined;
  }

  /**
   * Taken off its replica (its blocks and executor state already released) to run on another one:
   * everything known becomes its next prefill there, as after a preemption by recompute.
   */
  detach(): void {
    if (this.#computed > 0 || this.decoded > 0) this.#preemptions++;
    this.#status = 'waiting';
    this.#inExecutor = false;
    this.#computed = 0;
    this.#target = this.#tokens.length;
  }
  /** The scheduler said it cannot meet its TTFT deadline; it now runs best effort. */
  get deferred(): boolean {
    return this.#deferred;
  }
  get preemptions(): number {
    return this.#preemptions;
  }
  /** Set by an abort or a failing callback; acted on between steps. */
  get pendingEnd(): PendingEnd | undefined {
    return this.#pendingEnd;
  }
  get firstTokenMs(): number | undefined {
    return this.#firstTokenMs;
  }
  get text(): string {
    return this.#text;
  }

  /**
   * Its prompt (or, after a preemption, everything known) is in the cache and its last token
   * was sampled: each step now feeds it one token.
   */
  get isDecoding(): boolean {
    return this.#computed >= this.#target;
  }

  /** Output tokens sampled so far. */
  get decoded(): number {
    return this.#tokens.length - this.promptTokens;
  }

  /** Known tokens not yet in the cache. */
  get uncomputed(): number {
    return this.#tokens.length - this.#computed;
  }

  /** The generated ids. */
  generated(): number[] {
    return this.#tokens.slice(this.promptTokens);
  }

  /** It entered the engine, its sampler state registered with the executor. */
  admitted(nowMs: number): void {
    this.#status = 'running';
    this.#inExecutor = true;
    this.#admittedMs ??= nowMs;
  }

  /** It runs best effort from now on. */
  defer(): void {
    this.#deferred = true;
  }

  /** `n` more of its tokens are in the cache. */
  advance(n: number): void {
    this.#computed = Math.min(this.#computed + n, this.#tokens.length);
  }

  /** A sampled token. */
  appendToken(token: number, logprob: number, nowMs: number): void {
    this.#tokens.push(token);
    this.#logprobs.push(logprob);
    this.#firstTokenMs ??= nowMs;
    this.#lastTokenMs = nowMs;
  }

  /** Text streamed for its tokens. */
  appendText(text: string): void {
    this.#text += text;
  }

  /** Preempted by recompute (its blocks already freed): everything known becomes its new prefill. */
  resetForRecompute(): void {
    this.#computed = 0;
    this.#target = this.#tokens.length;
    this.#preemptions++;
  }

  /** End it at the next step boundary; the first reason given wins. */
  endAtBoundary(end: PendingEnd): void {
    this.#pendingEnd ??= end;
  }

  /** It is over (blocks and executor state already released). */
  finished(): void {
    this.#status = 'finished';
    this.#inExecutor = false;
  }

  timings(nowMs: number): RequestTimings {
    const n = this.decoded;
    return {
      queueMs: (this.#admittedMs ?? nowMs) - this.arrivalMs,
      ttftMs: this.#firstTokenMs === undefined ? undefined : this.#firstTokenMs - this.arrivalMs,
      tpotMs: n >= 2 && this.#firstTokenMs !== undefined && this.#lastTokenMs !== undefined ? (this.#lastTokenMs - this.#firstTokenMs) / (n - 1) : undefined,
      e2eMs: nowMs - this.arrivalMs,
    };
  }
}
