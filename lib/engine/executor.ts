/**
 * Executor: the one seam between TypeScript and the addon's batch executor. It attaches a model to
 * a KV pool (geometry, pool registration, the native executor, in that order and undone on any
 * failure), packs a step's chunks into the addon's arrays once, unpacks the sampled tokens, and
 * maps every native error to a typed one. The Engine, ModelRunner and the warm-up all go through it.
 * @module
 */
import type { SamplingOptions } from '../data-types.js';
import { codeOf, ExecutorError, type ExecutorErrorCode, KvError, type KvErrorCode, ModelError, type ModelErrorCode } from '../errors.js';
import { type KvPool, kvTokenBytes } from '../kv-pool.js';
import type { KvFormat, KvGeometry } from '../kv-types.js';
import type { Model } from '../model.js';
import type { NativeExecutor, NativeThreadPool } from '../native/addon-types.js';
import { loadNative } from '../native/loader.js';
import { blockBytesOf, tokensPerBlockFor } from './block-size.js';

/** One sequence's part of a step: `tokens` enter the cache at `position`; `blocks` is its block table. */
export interface ExecutorChunk {
  readonly seqId: number;
  readonly tokens: ArrayLike<number>;
  readonly position: number;
  /** At least the blocks that cover `position + tokens.length`; only those are passed. */
  readonly blocks: ArrayLike<number>;
  /** Sample a token after this chunk (it reaches the end of what the sequence knows). */
  readonly sample: boolean;
}

/** A sampled token with its log-probability and the requested alternatives, best first. */
export interface SampledToken {
  readonly token: number;
  readonly logprob: number;
  readonly top: readonly { readonly token: number; readonly logprob: number }[];
}

/** What a step returns: per chunk, its sampled token (undefined where it did not sample). */
export interface ExecutorStepResult {
  readonly samples: readonly (SampledToken | undefined)[];
  /** With `returnLogits`: one vocabulary row per sampling chunk, in chunk order. */
  readonly logits?: Float32Array;
}

/** Options of {@link Executor.attach}. */
export interface AttachOptions {
  /** Name of the model in the pool's accounting. */
  readonly name: string;
  /** Default the model's precision's KV format. */
  readonly kvFormat?: KvFormat;
  /** Worker threads of a pool of the executor's own (ignored with `threadPool`). */
  readonly threads: number;
  /** Threads shared with other executors. */
  readonly threadPool?: NativeThreadPool | undefined;
  /** The thread pool is this executor's alone: {@link Executor.dispose} disposes it too. */
  readonly ownsThreadPool?: boolean;
  /** Tokens per KV block wanted; default 16. Halved where smaller blocks fill the pool's slabs with over 5 % more tokens ({@link tokensPerBlockFor}). */
  readonly tokensPerBlock?: number;
  /** KV tokens the pool keeps for this model whatever the others hold, capped at `maxBytes`. */
  readonly reserve?: { readonly tokens: number; readonly maxBytes: number };
}

/** Native errors as the typed errors users catch. */
export function typedNativeError(err: unknown): unknown {
  const code = codeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  const options = { cause: err };
  if (err instanceof KvError || err instanceof ExecutorError || err instanceof ModelError) return err;
  if (code?.startsWith('ERR_KV_')) return new KvError(code as KvErrorCode, message, options);
  if (code?.startsWith('ERR_EXECUTOR_') || code === 'ERR_SAMPLING_INVALID' || code === 'ERR_THREAD_POOL_DISPOSED') return new ExecutorError(code as ExecutorErrorCode, message, options);
  if (code?.startsWith('ERR_MODEL_')) return new ModelError(code as ModelErrorCode, message, options);
  return err;
}

function typed<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw typedNativeError(err);
  }
}

/** The KV geometry `model` needs in `format` at `tokensPerBlock` (scale bytes included). */
export function kvGeometry(model: Model, format: KvFormat, tokensPerBlock: number): Required<KvGeometry> {
  return typed(() => loadNative().binding.kvGeometryFor(model.native, format, tokensPerBlock));
}

/** See the module comment. */
export class Executor {
  readonly pool: KvPool;
  /** The model's id in the pool. */
  readonly kvModel: number;
  readonly geometry: Required<KvGeometry>;
  readonly kvFormat: KvFormat;
  /** KV bytes per token, scales included. */
  readonly kvBytesPerToken: number;
  /** Blocks the pool keeps for this model whatever the others hold (the reserve asked for, capped). */
  readonly reserveBlocks: number;
  readonly vocabSize: number;
  #native: NativeExecutor | undefined;
  readonly #ownThreads: NativeThreadPool | undefined;

  private constructor(pool: KvPool, kvModel: number, geometry: Required<KvGeometry>, kvFormat: KvFormat, reserveBlocks: number, vocabSize: number, native: NativeExecutor, ownThreads: NativeThreadPool | undefined) {
    this.reserveBlocks = reserveBlocks;
    this.#ownThreads = ownThreads;
    this.pool = pool;
    this.kvModel = kvModel;
    this.geometry = geometry;
    this.kvFormat = kvFormat;
    this.kvBytesPerToken = kvTokenBytes(geometry);
    this.vocabSize = vocabSize;
    this.#native = native;
  }

  /**
   * Registers `model` with `pool` and makes its native executor. Throws a typed error (KvError for
   * a geometry or reserve that does not fit, ExecutorError for the executor) with nothing left
   * registered.
   */
  static attach(model: Model, pool: KvPool, options: AttachOptions): Executor {
    const kvFormat = options.kvFormat ?? model.precision.kv;
    // A block is every layer of `tokensPerBlock` tokens, sized to the pool's slabs: neither a
    // large tail per slab nor small blocks' padding per token.
    const slabBytes = pool.stats().slabBytes;
    const tokensPerBlock = tokensPerBlockFor(slabBytes, options.tokensPerBlock ?? 16, (t) => blockBytesOf(kvGeometry(model, kvFormat, t)));
    const geometry = kvGeometry(model, kvFormat, tokensPerBlock);
    const blockBytes = kvTokenBytes(geometry) * tokensPerBlock;
    const reserveBlocks = options.reserve === undefined ? 0 : Math.min(Math.ceil(options.reserve.tokens / tokensPerBlock), Math.floor(options.reserve.maxBytes / blockBytes));
    const kvModel = pool.addModel({ name: options.name, geometry, ...(reserveBlocks > 0 ? { reserveBlocks } : {}) });
    try {
      const Native = loadNative().binding.Executor;
      const native = typed(
        () =>
          new Native(model.native, pool.nativeHandle(), kvModel, {
            kvFormat,
            threads: options.threads,
            ...(options.threadPool === undefined ? {} : { pool: options.threadPool }),
          }),
      );
      return new Executor(pool, kvModel, geometry, kvFormat, reserveBlocks, model.config.vocabSize, native, options.ownsThreadPool === true ? options.threadPool : undefined);
    } catch (err) {
      pool.removeModel(kvModel);
      throw err;
    }
  }

  get tokensPerBlock(): number {
    return this.geometry.tokensPerBlock;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  #live(what: string): NativeExecutor {
    if (this.#native === undefined) throw new ExecutorError('ERR_EXECUTOR_DISPOSED', `${what}: the executor was disposed`);
    return this.#native;
  }

  /**
   * Registers a sequence (its sampling parameters and sampler state, seeded by `tokens`). A
   * sequence moved from another executor passes the tokens it generated there as `output`: its
   * penalties and seeded draws continue as if it had never moved.
   */
  addSequence(id: number, tokens: readonly number[], sampling: SamplingOptions, output?: readonly number[]): void {
    const native = this.#live('addSequence');
    typed(() => native.addSequence(id, Int32Array.from(tokens), sampling, output === undefined || output.length === 0 ? undefined : Int32Array.from(output)));
  }

  removeSequence(id: number): void {
    const native = this.#live('removeSequence');
    typed(() => native.removeSequence(id));
  }

  /** Runs one step over `chunks`; rejects with a typed error, having written nothing. */
  async step(chunks: readonly ExecutorChunk[], options: { returnLogits?: boolean } = {}): Promise<ExecutorStepResult> {
    const native = this.#live('step');
    const tpb = this.tokensPerBlock;
    const n = chunks.length;
    const ids = new Uint32Array(n);
    const nTokens = new Uint32Array(n);
    const positions = new Uint32Array(n);
    const nBlocks = new Uint32Array(n);
    const sample = new Uint8Array(n);
    let totalTokens = 0;
    let totalBlocks = 0;
    chunks.forEach((c, i) => {
      ids[i] = c.seqId;
      nTokens[i] = c.tokens.length;
      positions[i] = c.position;
      nBlocks[i] = Math.ceil((c.position + c.tokens.length) / tpb);
      sample[i] = c.sample ? 1 : 0;
      totalTokens += c.tokens.length;
      totalBlocks += nBlocks[i]!;
    });
    const tokens = new Int32Array(totalTokens);
    const blocks = new Uint32Array(totalBlocks);
    let t = 0;
    let b = 0;
    chunks.forEach((c, i) => {
      for (let k = 0; k < c.tokens.length; k++) tokens[t++] = c.tokens[k]!;
      for (let k = 0; k < nBlocks[i]!; k++) blocks[b++] = c.blocks[k]!;
    });
    let out;
    try {
      out = await native.step(ids, tokens, nTokens, positions, blocks, nBlocks, sample, options.returnLogits === true);
    } catch (err) {
      throw typedNativeError(err);
    }
    const samples = chunks.map((c, i): SampledToken | undefined => {
      const token = out.tokens[i]!;
      if (!c.sample || token < 0) return undefined;
      const top: { token: number; logprob: number }[] = [];
      for (let j = 0; j < out.topK; j++) {
        const alt = out.topTokens[i * out.topK + j]!;
        if (alt >= 0) top.push({ token: alt, logprob: out.topLogprobs[i * out.topK + j]! });
      }
      return { token, logprob: out.logprobs[i]!, top };
    });
    return { samples, ...(out.logits === undefined ? {} : { logits: out.logits }) };
  }

  /**
   * Frees the native executor (its share of the weights and the pool) and the model's KV
   * registration with every block it held. Idempotent; later calls throw `ERR_EXECUTOR_DISPOSED`.
   * Call it between steps.
   */
  dispose(): void {
    const native = this.#native;
    if (native === undefined) return;
    this.#native = undefined;
    native.dispose();
    this.#ownThreads?.dispose();
    // The pool may already be gone (an engine closing its device): its blocks went with it.
    if (!this.pool.disposed) this.pool.removeModel(this.kvModel);
  }
}
