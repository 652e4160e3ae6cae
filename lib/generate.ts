/**
 * Random-weight models of real Llama-family shapes, written as GGUF or as a Hugging Face folder by
 * the native addon off the JS thread: for numerics tests at real head sizes and for benchmarks at
 * real model sizes without downloading anything. One seed is one model: its GGUF file and its HF
 * folder hold the same weights and give the same logits.
 * @module
 */
import { runCancellable } from './cancellable.js';
import { codeOf, FineserveError, ModelError, type ModelErrorCode } from './errors.js';
import { loadNative } from './native/loader.js';
import type { GeneratedModel } from './data-types.js';

export type { GeneratedModel } from './data-types.js';

/**
 * Shapes {@link generateModel} knows: the real models' hyper-parameters, plus `tiny` (Llama, GQA,
 * Llama 3 RoPE scaling) and `tiny-qwen2` (QKV bias, tied embeddings) for fast tests.
 */
export const MODEL_SHAPES = ['tiny', 'tiny-qwen2', 'llama-100m', 'llama-3.2-1b', 'llama-3-8b', 'qwen2.5-0.5b'] as const;

/** One of {@link MODEL_SHAPES}. */
export type ModelShape = (typeof MODEL_SHAPES)[number];

/** Options of {@link generateModel}. */
export interface GenerateModelOptions {
  readonly shape: ModelShape;
  /** Transformer blocks; default: the shape's own. */
  readonly layers?: number;
  /** Vocabulary size (at least 8); default: the shape's own. */
  readonly vocab?: number;
  /** Type of the weight matrices; default `f16`. GGUF keeps 1-D tensors in f32, as llama.cpp does. */
  readonly dtype?: 'f32' | 'f16' | 'bf16';
  /** `gguf`: one file at `out`; `hf`: a folder at `out` (config.json, safetensors, tokenizer files). */
  readonly format: 'gguf' | 'hf';
  /** Default 0. Integers up to 2^53. */
  readonly seed?: number;
  /** The `.gguf` file or the folder to write. */
  readonly out: string;
  /** `hf`: shard the safetensors past this many bytes; default 5e9 (0: one file). */
  readonly maxShardBytes?: number;
  /** Called with the fraction written, 0..1, at most about once per percent. */
  readonly onProgress?: (fraction: number) => void;
  /** Aborting cancels: nothing is left behind and the promise rejects with `ERR_MODEL_CANCELLED`. */
  readonly signal?: AbortSignal;
}

/** Codes of errors {@link generateModel} rejects with, besides `ERR_MODEL_CANCELLED`. */
export type GenerateErrorCode = 'ERR_GENERATE_INVALID' | 'ERR_GENERATE_IO';

function typed(err: unknown): unknown {
  const code = codeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code?.startsWith('ERR_MODEL_')) return new ModelError(code as ModelErrorCode, message);
  if (code === 'ERR_GENERATE_INVALID' || code === 'ERR_GENERATE_IO') return new FineserveError(code, message);
  return err;
}

function nonNegativeInteger(name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
    throw new FineserveError('ERR_GENERATE_INVALID', `${name} must be a non-negative integer, got ${value}`);
  }
}

/**
 * Writes a random-weight model. Deterministic: the same options give the same bytes. Rejects with
 * `ERR_GENERATE_INVALID` for bad options (naming the option), `ERR_GENERATE_IO` when the files
 * cannot be written, `ERR_MODEL_CANCELLED` when `signal` aborts, and `ERR_CALLBACK` (the error as
 * its cause) when `onProgress` throws, which also cancels.
 */
export async function generateModel(options: GenerateModelOptions): Promise<GeneratedModel> {
  const { signal, onProgress } = options;
  if (!(MODEL_SHAPES as readonly string[]).includes(options.shape)) {
    throw new FineserveError('ERR_GENERATE_INVALID', `shape must be one of ${MODEL_SHAPES.join(', ')}, got ${String(options.shape)}`);
  }
  if (options.format !== 'gguf' && options.format !== 'hf') {
    throw new FineserveError('ERR_GENERATE_INVALID', `format must be "gguf" or "hf", got ${String(options.format)}`);
  }
  if (options.dtype !== undefined && !['f32', 'f16', 'bf16'].includes(options.dtype)) {
    throw new FineserveError('ERR_GENERATE_INVALID', `dtype must be "f32", "f16" or "bf16", got ${String(options.dtype)}`);
  }
  if (typeof options.out !== 'string' || options.out === '') {
    throw new FineserveError('ERR_GENERATE_INVALID', 'out (the file or folder to write) is required');
  }
  nonNegativeInteger('layers', options.layers);
  nonNegativeInteger('vocab', options.vocab);
  nonNegativeInteger('seed', options.seed);
  nonNegativeInteger('maxShardBytes', options.maxShardBytes);
  const nativeOptions = {
    shape: options.shape,
    format: options.format,
    out: options.out,
    ...(options.layers !== undefined && { layers: options.layers }),
    ...(options.vocab !== undefined && { vocab: options.vocab }),
    ...(options.dtype !== undefined && { dtype: options.dtype }),
    ...(options.seed !== undefined && { seed: options.seed }),
    ...(options.maxShardBytes !== undefined && { maxShardBytes: options.maxShardBytes }),
  };
  const r = await runCancellable((progress) => loadNative().binding.generateModel(nativeOptions, progress), {
    onProgress,
    signal,
    abortedMessage: `generating ${options.out} was aborted before it started`,
    callbackMessage: `onProgress threw while generating ${options.out}; it was cancelled`,
    typed,
  });
  return { path: r.path, parameters: r.parameters, bytes: r.bytes };
}
