/**
 * One generation request as the user sees it: the options of `engine.generate()`, the chunks it
 * streams (through `onToken` and as an AsyncIterable) and the result it settles with.
 * @module
 */
import type { SamplingOptions } from './runner.js';
import type { ChatMessage } from './tokenizer.js';

/** What to generate from: text, token ids, or chat messages (rendered by the model's chat template). */
export type PromptInput =
  | { readonly prompt: string; readonly tokens?: never; readonly messages?: never }
  | { readonly tokens: readonly number[]; readonly prompt?: never; readonly messages?: never }
  | { readonly messages: readonly ChatMessage[]; readonly prompt?: never; readonly tokens?: never };

/** One streamed piece of output: the text a new token completed (may be empty) and the token. */
export interface GenerationChunk {
  /** Text this token completed. Empty while a UTF-8 character or a possible stop string is incomplete. */
  readonly text: string;
  readonly tokenId: number;
  /** 0 for the first generated token. */
  readonly index: number;
  /** Log-probability of the token, when `logprobs` was asked for. */
  readonly logprob?: number;
  /** `logprobs` alternatives, best first, when asked for. */
  readonly topLogprobs?: readonly { readonly token: number; readonly logprob: number }[];
}

/** Options of `engine.generate()`. Sampling fields are those of {@link SamplingOptions}. */
export type GenerateOptions = PromptInput &
  SamplingOptions & {
    /** Id of a loaded model. */
    readonly model: string;
    /** Most tokens to generate; default: as many as the model's context leaves after the prompt. */
    readonly maxTokens?: number;
    /** Generation stops before any of these strings (not included in the text). */
    readonly stop?: string | readonly string[];
    /** Generation stops after any of these token ids; default the tokenizer's end-of-sequence ids. */
    readonly stopTokens?: readonly number[];
    /** With `messages`: a Jinja chat template to render them with instead of the model's. */
    readonly chatTemplate?: string;
    /** Higher runs first when the device is contended; default 0. */
    readonly priority?: number;
    /**
     * This request's latency objectives, each field overriding its model's (`loadModel`'s `slo`):
     * its TTFT deadline in admission, its TPOT in the step guard, and `sloMet`.
     */
    readonly slo?: { readonly ttftMs?: number; readonly tpotMs?: number };
    /** Aborting ends the request with finishReason `abort`, keeping what was generated. */
    readonly signal?: AbortSignal;
    /** Called for every generated token, in order. If it throws, the request ends with `error`. */
    readonly onToken?: (chunk: GenerationChunk) => void;
  };

/** Why a request ended. `error` comes with {@link GenerationResult.error}. */
export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

/** Latency of one request, milliseconds. */
export interface RequestTimings {
  /** Arrival to the first scheduling into the engine. */
  readonly queueMs: number;
  /** Arrival to the first token; undefined when no token came. */
  readonly ttftMs: number | undefined;
  /** Mean time between tokens after the first; undefined with fewer than two tokens. */
  readonly tpotMs: number | undefined;
  /** Arrival to the end. */
  readonly e2eMs: number;
}

/** What a request produced. */
export interface GenerationResult {
  readonly text: string;
  /** Generated token ids (the stop token that ended it is not included). */
  readonly tokens: number[];
  readonly finishReason: FinishReason;
  /** Tokens of the prompt, after templating and tokenization. */
  readonly promptTokens: number;
  readonly timings: RequestTimings;
  /** Whether the request met its model's TTFT and TPOT SLOs; undefined when aborted. */
  readonly sloMet: boolean | undefined;
  /** Times the request was preempted (its KV recomputed) to free memory. */
  readonly preemptions: number;
  /** Set when finishReason is `error`: a callback that threw, a dropped request, an unload. */
  readonly error?: Error;
}

/**
 * A running request: iterate it for its chunks (`for await (const c of run)`) and/or await
 * `result`. The iterator ends when the request ends, and throws its error if it ended in `error`;
 * `result` always resolves (it never rejects), with the finish reason.
 */
export class GenerationRun implements AsyncIterable<GenerationChunk> {
  /** Settles when the request ends. */
  readonly result: Promise<GenerationResult>;
  /** The engine-wide id of this request. */
  readonly id: number;
  readonly #chunks: GenerationChunk[] = [];
  #readers: (() => void)[] = [];
  #final: GenerationResult | undefined;
  #resolve!: (r: GenerationResult) => void;

  /** @internal Made by the engine. */
  constructor(id: number) {
    this.id = id;
    this.result = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** @internal A new chunk for the iterators. */
  push(chunk: GenerationChunk): void {
    this.#chunks.push(chunk);
    this.#wakeReaders();
  }

  /** @internal The request ended. */
  finish(result: GenerationResult): void {
    if (this.#final !== undefined) return;
    this.#final = result;
    this.#resolve(result);
    this.#wakeReaders();
  }

  /** Whether the request has ended. */
  get done(): boolean {
    return this.#final !== undefined;
  }

  #wakeReaders(): void {
    const readers = this.#readers;
    this.#readers = [];
    for (const r of readers) r();
  }

  /** The chunks from the first, then each as it comes; ends with the request (throws its error if it ended in `error`). */
  async *[Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    // Each iterator reads every chunk from the start, so late and multiple readers see the same stream.
    let at = 0;
    for (;;) {
      while (at < this.#chunks.length) yield this.#chunks[at++]!;
      const final = this.#final;
      if (final !== undefined) {
        if (at < this.#chunks.length) continue;
        if (final.finishReason === 'error' && final.error !== undefined) throw final.error;
        return;
      }
      await new Promise<void>((resolve) => this.#readers.push(resolve));
    }
  }
}
