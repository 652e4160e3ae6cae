/**
 * Loading models: a GGUF file or a Hugging Face folder (config.json + safetensors), read and
 * checked by the native addon off the JS thread, with progress and cancellation.
 * @module
 */
import { statSync } from 'node:fs';

import { runCancellable } from './cancellable.js';
import { codeOf, ExecutorError, type ExecutorErrorCode, ModelError, type ModelErrorCode } from './errors.js';
import type { KvFormat } from './kv-pool.js';
import { checkModelFiles } from './model-files.js';
import { loadNative } from './native/loader.js';
import { KV_FORMATS, parsePrecision, type PrecisionName, type PrecisionSpec, servedPrecisionName } from './precision.js';
import { Tokenizer } from './tokenizer.js';
import type { LlamaConfig, PerplexityResult } from './data-types.js';
import type { NativeModel, NativeQuantizeSpec } from './native/addon-types.js';

export type { LlamaConfig, PerplexityResult } from './data-types.js';

/**
 * Data that post-training quantization looks at to choose its scales (AWQ for `w4a16`, channel
 * smoothing for `w8a8`/`w4a8`, K smoothing for `-kv4`): token id sequences, or text that the
 * model's own tokenizer turns into them (a folder's tokenizer.json, a GGUF file's embedded
 * vocabulary).
 */
export type Calibration = { readonly tokens: readonly (readonly number[])[] } | { readonly text: readonly string[] };

/** Options of {@link Model.load}. */
export interface LoadModelOptions {
  /**
   * Weight, activation and KV formats: a name (`'w4a16-kv8'`) or a spec. Default `'auto'`: the
   * weights as the file stores them (whatever their type), f16 KV. `fp32`/`fp16`/`bf16` convert
   * the weights to that type; 8- and 4-bit weight formats are made at load (PTQ). Both start from
   * F32/F16/BF16 weights: a GGUF quant file (Q4_0, ...) loads as it is, with `'auto'`.
   */
  readonly precision?: PrecisionName | PrecisionSpec;
  /** Calibration data for PTQ; without it, weights are rounded to nearest (RTN). */
  readonly calibration?: Calibration;
  /** Scan every weight for NaN/Inf (reads the whole file once). Default true. */
  readonly checkFinite?: boolean;
  /** Called with the fraction done, 0..1 (loading, then quantizing), at most about once per percent. */
  readonly onProgress?: (fraction: number) => void;
  /** Aborting cancels the load; it then rejects with `ERR_MODEL_CANCELLED`. */
  readonly signal?: AbortSignal;
}

/** Options of {@link Model.perplexity}. */
export interface PerplexityOptions {
  /** KV cache format to evaluate with; default the model's precision's. */
  readonly kvFormat?: KvFormat;
  /** Worker threads; default every core this process may use (never more). */
  readonly threads?: number;
  /** Tokens per forward step; default 128. */
  readonly chunk?: number;
  /**
   * Tokens per evaluation window; default the model's `maxContext`. A longer text is scored in
   * consecutive windows that share one token (the last of a window conditions the next), each
   * from an empty cache, as llama.cpp's `perplexity` does with its context size: every token but
   * the first is scored once.
   */
  readonly window?: number;
  readonly onProgress?: (fraction: number) => void;
  readonly signal?: AbortSignal;
}

function asModelError(err: unknown): unknown {
  const code = codeOf(err);
  if (code?.startsWith('ERR_EXECUTOR_')) return new ExecutorError(code as ExecutorErrorCode, (err as Error).message);
  return code?.startsWith('ERR_MODEL_') ? new ModelError(code as ModelErrorCode, (err as Error).message) : err;
}

/**
 * The tokenizer calibration.text is encoded with: a folder's tokenizer.json, or the vocabulary a
 * GGUF file embeds, which the addon reads (one extra read of the file, without the NaN scan).
 */
async function calibrationTokenizer(source: string, signal: AbortSignal | undefined): Promise<Tokenizer> {
  if (statSync(source, { throwIfNoEntry: false })?.isDirectory()) return Tokenizer.fromFolder(source);
  const native = await runCancellable((progress) => loadNative().binding.loadModel(source, false, progress), {
    onProgress: undefined,
    signal,
    abortedMessage: `loading ${source} was aborted before it started`,
    callbackMessage: `reading the vocabulary of ${source} was cancelled`,
    typed: asModelError,
  });
  try {
    const info = native.info();
    return Tokenizer.forModel({ source: info.source, format: info.format, config: info.config, metadata: (key) => native.metadata(key) });
  } finally {
    native.dispose();
  }
}

async function calibrationTokens(source: string, calibration: Calibration | undefined, signal: AbortSignal | undefined): Promise<Int32Array[]> {
  if (calibration === undefined) return [];
  if ('tokens' in calibration) {
    return calibration.tokens.map((seq, i) => {
      if (!Array.isArray(seq) && !(seq instanceof Int32Array)) {
        throw new ModelError('ERR_MODEL_PRECISION', `calibration.tokens[${i}] is not an array of token ids`);
      }
      return Int32Array.from(seq);
    });
  }
  if (!Array.isArray(calibration.text) || calibration.text.some((t) => typeof t !== 'string')) {
    throw new ModelError('ERR_MODEL_PRECISION', 'calibration.text must be an array of strings');
  }
  const tokenizer = await calibrationTokenizer(source, signal);
  return calibration.text.map((t) => Int32Array.from(tokenizer.encode(t)));
}

/**
 * A loaded model. Its weights live in memory it owns (the files are read, never mapped: replacing
 * or truncating a file under a served model changes nothing) until {@link dispose} or collection.
 */
export class Model {
  readonly config: LlamaConfig;
  /** The path it was loaded from. */
  readonly source: string;
  readonly format: 'gguf' | 'safetensors';
  /** Bytes of all weight tensors as the model holds them (after quantization). */
  readonly weightBytes: number;
  /** Formats of the weights, activations and KV cache this model runs with. */
  readonly precision: PrecisionSpec;
  /** How many weight tensors are stored in each type (`{ W4A16: 14, F32: 5 }`). */
  readonly weightFormats: Readonly<Record<string, number>>;
  /**
   * The precision's name as the model runs: `'w4a16-kv8'`, `'fp16'`; under `'auto'` the type of
   * the file's weights (`'q4_0'`, `'q4_k'`, `'bf16'`, `'fp32-kv16'` for an F32 file, whose cache
   * is f16).
   */
  readonly precisionName: string;
  #native: NativeModel | undefined;

  private constructor(native: NativeModel, precision: PrecisionSpec) {
    const info = native.info();
    this.#native = native;
    this.config = info.config;
    this.source = info.source;
    this.format = info.format;
    this.weightBytes = info.weightBytes;
    this.weightFormats = info.weightFormats ?? {};
    this.precision = precision;
    this.precisionName = servedPrecisionName(precision, this.weightFormats);
  }

  /**
   * Perplexity of `tokens` (the first one only conditions): every token scored given its prefix
   * within its window (see {@link PerplexityOptions.window}), in chunks through a KV cache of the
   * given format. Rejects with `ExecutorError` `ERR_EXECUTOR_INVALID` for fewer than 2 tokens, a
   * token outside the vocabulary, or a window outside 2..maxContext.
   */
  async perplexity(tokens: readonly number[] | Int32Array, options: PerplexityOptions = {}): Promise<PerplexityResult> {
    const ids = Int32Array.from(tokens);
    const window = options.window ?? this.config.maxContext;
    if (!Number.isInteger(window) || window < 2 || window > this.config.maxContext) {
      throw new ExecutorError('ERR_EXECUTOR_INVALID', `perplexity: window = ${window} must be an integer in 2..${this.config.maxContext} (the model's context)`);
    }
    const chunk = options.chunk ?? 128;
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > 1 << 20) throw new ExecutorError('ERR_EXECUTOR_INVALID', `perplexity: chunk = ${chunk} must be an integer from 1 to ${1 << 20}`);
    const kvFormat = options.kvFormat ?? this.precision.kv;
    if (!KV_FORMATS.includes(kvFormat)) throw new ExecutorError('ERR_EXECUTOR_INVALID', `perplexity: kvFormat = ${JSON.stringify(kvFormat)}: expected one of ${KV_FORMATS.join(', ')}`);
    const threads = options.threads ?? 0;
    if (!Number.isInteger(threads) || threads < 0) throw new ExecutorError('ERR_EXECUTOR_INVALID', `perplexity: threads = ${threads} must be an integer >= 0 (0 = every usable core)`);
    const native = { kvFormat, threads, chunk };
    const starts: number[] = [];
    for (let start = 0; start === 0 || start + 1 < ids.length; start += window - 1) starts.push(start);
    let nllSum = 0;
    let scored = 0;
    for (const start of starts) {
      const part = ids.subarray(start, Math.min(ids.length, start + window));
      const done = scored;
      const r = await runCancellable((progress) => loadNative().binding.perplexity(this.native, part, native, progress), {
        onProgress: options.onProgress && ((f: number) => options.onProgress!((done + f * (part.length - 1)) / Math.max(1, ids.length - 1))),
        signal: options.signal,
        abortedMessage: 'perplexity was aborted before it started',
        callbackMessage: 'onProgress threw during perplexity; it was cancelled',
        typed: asModelError,
      });
      nllSum += r.nllSum;
      scored += r.scored;
    }
    return { perplexity: Math.exp(nllSum / scored), nllSum, scored };
  }

  /** @internal The addon's model; throws `ERR_MODEL_DISPOSED` after {@link dispose}. */
  get native(): NativeModel {
    if (this.#native === undefined) throw new ModelError('ERR_MODEL_DISPOSED', `${this.source}: the model was disposed`);
    return this.#native;
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#native === undefined;
  }

  /**
   * Frees the weights now, instead of whenever the garbage collector finds the object: memory the
   * JS heap cannot see (host or device weights) comes back at once. Runners and engines already
   * serving the model keep their own share until they are disposed. Idempotent; any later use
   * throws `ERR_MODEL_DISPOSED`.
   */
  dispose(): void {
    const native = this.#native;
    if (native === undefined) return;
    this.#native = undefined;
    native.dispose();
  }

  /** `using model = await Model.load(...)` disposes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** A GGUF metadata value as a string (arrays as JSON); undefined when absent or for HF folders. */
  metadata(key: string): string | undefined {
    return this.native.metadata(key);
  }

  /**
   * Loads a `.gguf` file (F32/F16/BF16 or the GGUF quant types Q8_0, Q4_0, Q4_K, Q6_K, used in
   * place) or a Hugging Face folder, quantizing it at load when `precision` asks for an 8- or
   * 4-bit weight format. Rejects with {@link ModelError} naming the file, tensor and field when the
   * model cannot be used (`ERR_MODEL_PRECISION` for an unknown precision), and with
   * `ERR_MODEL_CANCELLED` when `signal` aborts. An `onProgress` that throws cancels the load and
   * rejects with that error as the cause.
   */
  static async load(source: string, options: LoadModelOptions = {}): Promise<Model> {
    await checkModelFiles(source, options.signal);
    const name = options.precision ?? 'auto';
    const precision = parsePrecision(name);
    const checkFinite = options.checkFinite ?? true;
    let request: boolean | { checkFinite: boolean; quantize: NativeQuantizeSpec } = checkFinite;
    if (precision.weights !== 'source') {
      if (options.calibration !== undefined && (precision.weights === 'f32' || precision.weights === 'f16' || precision.weights === 'bf16')) {
        throw new ModelError('ERR_MODEL_PRECISION', `calibration is only used by the 8- and 4-bit precisions; ${JSON.stringify(name)} converts the weights to ${precision.weights}, rounding to nearest`);
      }
      const calibration = await calibrationTokens(source, options.calibration, options.signal);
      request = {
        checkFinite,
        quantize: { weights: precision.weights, group: precision.group ?? 128, kv: precision.kv, calibration, smoothK: true },
      };
    } else if (options.calibration !== undefined) {
      throw new ModelError('ERR_MODEL_PRECISION', `calibration is only used by quantized precisions; precision ${JSON.stringify(options.precision ?? 'auto')} keeps the file's weights`);
    }
    const native = await runCancellable(
      (progress) => loadNative().binding.loadModel(source, request, progress),
      {
        onProgress: options.onProgress,
        signal: options.signal,
        abortedMessage: `loading ${source} was aborted before it started`,
        callbackMessage: `onProgress threw while loading ${source}; the load was cancelled`,
        typed: asModelError,
      },
    );
    return new Model(native, precision);
  }
}
