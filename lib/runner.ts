/**
 * ModelRunner: runs one model over a KV Slab of its own, for offline batch generation from token
 * ids (tests, benchmarks, and the layer the serving Engine schedules). Requests run with
 * continuous batching: prompts enter in chunks of at most `maxBatchTokens` while running sequences
 * decode, all in one executor step per iteration. Each request's KV blocks for prompt + maxTokens
 * are reserved when it is admitted, so a running request is never preempted; a request waits
 * until its blocks fit.
 * @module
 */
import { Executor, kvGeometry, typedNativeError } from './engine/executor.js';
import { ExecutorError, KvError } from './errors.js';
import { KvPool, kvTokenBytes, type KvFormat } from './kv-pool.js';
import type { Model } from './model.js';
import type { NativeThreadPool } from './thread-pool.js';
import type { SamplingOptions } from './data-types.js';

export type { SamplingOptions } from './data-types.js';

/** Options of {@link ModelRunner.create}. */
export interface RunnerOptions {
  /** KV cache element format; default the model's precision's (`model.precision.kv`). */
  readonly kvFormat?: KvFormat;
  /** Worker threads; default every core this process may use (never more). */
  readonly threads?: number;
  /**
   * Threads shared with other runners (`createThreadPool`), instead of a pool of this runner's
   * own; `threads` is then ignored. Steps of runners on one pool run one at a time.
   */
  readonly pool?: NativeThreadPool;
  /** KV pool size; default enough for 8 sequences of the model's full context, at most 1 GiB. */
  readonly poolBytes?: number;
  readonly tokensPerBlock?: number;
  /** Prompt tokens per step across all sequences (chunked prefill); default 512. */
  readonly maxBatchTokens?: number;
}

/** One generation request, in token ids. */
export interface GenerateRequest {
  readonly prompt: readonly number[];
  readonly maxTokens: number;
  readonly sampling?: SamplingOptions;
  /** Generation stops after any of these (default: the model's EOS). */
  readonly stopTokens?: readonly number[];
}

/** What a request produced. */
export interface GenerateOutput {
  readonly tokens: number[];
  /** Log-probability of each token under the model's raw distribution. */
  readonly logprobs: number[];
  /** Per token, `sampling.logprobs` alternatives, best first. */
  readonly topLogprobs: { token: number; logprob: number }[][];
  readonly finishReason: 'stop' | 'length';
  /** Logits at the last prompt position, when asked for. */
  readonly promptLogits?: Float32Array;
}

interface Running {
  readonly id: number;
  readonly index: number;
  readonly request: GenerateRequest;
  readonly blocks: Uint32Array;
  readonly stop: ReadonlySet<number>;
  prefilled: number;
  readonly output: { tokens: number[]; logprobs: number[]; topLogprobs: { token: number; logprob: number }[][] };
  promptLogits?: Float32Array;
}

/** Runs one model; see the module comment. */
export class ModelRunner {
  readonly model: Model;
  readonly pool: KvPool;
  readonly #executor: Executor;
  readonly #maxBatchTokens: number;
  #nextId = 1;
  #busy = false;

  private constructor(model: Model, pool: KvPool, executor: Executor, maxBatchTokens: number) {
    this.model = model;
    this.pool = pool;
    this.#executor = executor;
    this.#maxBatchTokens = maxBatchTokens;
  }

  static create(model: Model, options: RunnerOptions = {}): ModelRunner {
    const c = model.config;
    const kvFormat = options.kvFormat ?? model.precision.kv;
    const tokensPerBlock = options.tokensPerBlock ?? 16;
    const tokenBytes = kvTokenBytes(kvGeometry(model, kvFormat, tokensPerBlock));
    const poolBytes = options.poolBytes ?? Math.min(2 ** 30, Math.max(16 * 2 ** 20, 8 * c.maxContext * tokenBytes));
    // Slabs of at least 8 blocks keep the tail under the KV Slab's 1/8 limit whatever the shape.
    let slabBytes = 2 ** 21;
    while (slabBytes < 8 * tokensPerBlock * tokenBytes) slabBytes *= 2;
    const pool = KvPool.create({ poolBytes: Math.max(poolBytes, slabBytes), memory: 'host', slabBytes });
    try {
      const executor = Executor.attach(model, pool, { name: c.architecture, kvFormat, tokensPerBlock, threads: options.threads ?? 0, threadPool: options.pool });
      return new ModelRunner(model, pool, executor, options.maxBatchTokens ?? 512);
    } catch (err) {
      pool.dispose();
      throw err;
    }
  }

  /**
   * Frees the runner's executor and KV pool now (the model stays the caller's). Idempotent; a
   * later `generate` rejects with `ERR_EXECUTOR_DISPOSED`.
   */
  dispose(): void {
    if (this.#busy) throw new ExecutorError('ERR_EXECUTOR_BUSY', 'dispose: this ModelRunner is generating; wait for generate() to settle');
    this.#executor.dispose();
    this.pool.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Generates for every request, batching them together; resolves in request order. Rejects
   * with ExecutorError / KvError on bad input; a prompt longer than the model's context rejects
   * with `ERR_EXECUTOR_INVALID` naming the request, before any work starts.
   */
  async generate(requests: readonly GenerateRequest[], options: { returnPromptLogits?: boolean } = {}): Promise<GenerateOutput[]> {
    if (this.#busy) throw new ExecutorError('ERR_EXECUTOR_BUSY', 'this ModelRunner is already generating');
    if (this.#executor.disposed) throw new ExecutorError('ERR_EXECUTOR_DISPOSED', 'generate: this ModelRunner was disposed');
    const max = this.model.config.maxContext;
    requests.forEach((r, i) => {
      if (r.prompt.length === 0) throw new ExecutorError('ERR_EXECUTOR_INVALID', `requests[${i}]: the prompt is empty`);
      if (!Number.isInteger(r.maxTokens) || r.maxTokens < 1) {
        throw new ExecutorError('ERR_EXECUTOR_INVALID', `requests[${i}]: maxTokens = ${r.maxTokens}: must be an integer >= 1`);
      }
      if (r.prompt.length + r.maxTokens > max) {
        throw new ExecutorError(
          'ERR_EXECUTOR_INVALID',
          `requests[${i}]: ${r.prompt.length} prompt tokens + maxTokens ${r.maxTokens} exceed the model's context of ${max}`,
        );
      }
    });
    this.#busy = true;
    const results: (GenerateOutput | undefined)[] = new Array(requests.length);
    const waiting = requests.map((request, index) => ({ request, index }));
    const running: Running[] = [];
    try {
      while (waiting.length > 0 || running.length > 0) {
        this.#admit(waiting, running);
        if (running.length === 0) {
          throw new KvError('ERR_KV_INVALID_ARGUMENT', 'a request needs more KV blocks than the whole pool has; raise poolBytes');
        }
        await this.#step(running, options.returnPromptLogits === true);
        for (let i = running.length - 1; i >= 0; i--) {
          const r = running[i]!;
          const last = r.output.tokens.at(-1);
          const stopped = last !== undefined && r.stop.has(last);
          if (stopped || r.output.tokens.length >= r.request.maxTokens) {
            results[r.index] = {
              ...r.output,
              finishReason: stopped ? 'stop' : 'length',
              ...(r.promptLogits === undefined ? {} : { promptLogits: r.promptLogits }),
            };
            this.#release(r);
            running.splice(i, 1);
          }
        }
      }
    } catch (err) {
      for (const r of running) this.#release(r);
      throw typedNativeError(err);
    } finally {
      this.#busy = false;
    }
    return results as GenerateOutput[];
  }

  #admit(waiting: { request: GenerateRequest; index: number }[], running: Running[]): void {
    while (waiting.length > 0) {
      const { request, index } = waiting[0]!;
      const need = Math.ceil((request.prompt.length + request.maxTokens) / this.#executor.tokensPerBlock);
      const got = this.pool.alloc(this.#executor.kvModel, need);
      if (!got.ok) return;
      const id = this.#nextId++;
      try {
        this.#executor.addSequence(id, request.prompt, request.sampling ?? {});
      } catch (err) {
        this.pool.free(this.#executor.kvModel, got.blocks);
        throw err;
      }
      waiting.shift();
      const eos = this.model.config.eosTokenId;
      running.push({
        id,
        index,
        request,
        blocks: got.blocks,
        stop: new Set(request.stopTokens ?? (eos >= 0 ? [eos] : [])),
        prefilled: 0,
        output: { tokens: [], logprobs: [], topLogprobs: [] },
      });
    }
  }

  #release(r: Running): void {
    this.#executor.removeSequence(r.id);
    this.pool.free(this.#executor.kvModel, r.blocks);
  }

  async #step(running: Running[], returnPromptLogits: boolean): Promise<void> {
    const chunks: { r: Running; tokens: number[]; position: number; sample: boolean }[] = [];
    let budget = this.#maxBatchTokens;
    for (const r of running) {
      const prompt = r.request.prompt;
      if (r.prefilled < prompt.length) {
        if (budget <= 0) continue;
        const n = Math.min(budget, prompt.length - r.prefilled);
        budget -= n;
        chunks.push({ r, tokens: prompt.slice(r.prefilled, r.prefilled + n), position: r.prefilled, sample: r.prefilled + n === prompt.length });
      } else {
        chunks.push({ r, tokens: [r.output.tokens.at(-1)!], position: prompt.length + r.output.tokens.length - 1, sample: true });
      }
    }
    const wantLogits = returnPromptLogits && chunks.some((c) => c.sample && c.r.output.tokens.length === 0);
    const out = await this.#executor.step(
      chunks.map((c) => ({ seqId: c.r.id, tokens: c.tokens, position: c.position, blocks: c.r.blocks, sample: c.sample })),
      { returnLogits: wantLogits },
    );
    const vocab = this.model.config.vocabSize;
    let sampled = 0;
    chunks.forEach((c, i) => {
      c.r.prefilled = Math.min(c.r.request.prompt.length, c.position + c.tokens.length);
      if (!c.sample) return;
      if (wantLogits && out.logits !== undefined && c.r.output.tokens.length === 0) {
        c.r.promptLogits = out.logits.slice(sampled * vocab, (sampled + 1) * vocab);
      }
      sampled++;
      const got = out.samples[i]!;
      c.r.output.tokens.push(got.token);
      c.r.output.logprobs.push(got.logprob);
      c.r.output.topLogprobs.push([...got.top]);
    });
  }
}

