/**
 * Every error fineserve throws or rejects with is a {@link FineserveError}; `code` tells them apart
 * without string matching on messages.
 */
export class FineserveError extends Error {
  /** Stable machine-readable code, e.g. `ERR_NATIVE_LOAD`. */
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One place the loader looked for the native addon, and why it could not use it. */
export interface NativeLoadAttempt {
  /** Which kind of candidate this was. */
  readonly variant: AddonVariant;
  /** Absolute path of the `.node` file, or of the folder that had none. */
  readonly path: string;
  /** Why it was not used: not found, skipped, or the error `dlopen` gave. */
  readonly reason: string;
}

/** Where an addon binary comes from, in the order the loader tries them. */
export type AddonVariant = 'override' | 'local' | 'cuda-prebuild' | 'cpu-prebuild';

/** No native addon could be loaded; `attempts` lists every candidate tried, in order. */
export class NativeLoadError extends FineserveError {
  readonly attempts: readonly NativeLoadAttempt[];

  constructor(attempts: readonly NativeLoadAttempt[]) {
    const lines = attempts.map((a) => `  - ${a.variant}: ${a.path}\n      ${a.reason}`);
    super(
      'ERR_NATIVE_LOAD',
      `fineserve could not load its native addon. Tried, in order:\n${lines.join('\n')}\n` +
        'Build it from source with `npm run build:native` (needs cmake and a C++17 compiler), ' +
        'or reinstall the package to get its prebuilt binaries.',
    );
    this.attempts = attempts;
  }
}

/** Codes a {@link KvError} carries; each names one kind of misuse of a KV pool. */
export type KvErrorCode =
  | 'ERR_KV_INVALID_ARGUMENT'
  | 'ERR_KV_INVALID_GEOMETRY'
  | 'ERR_KV_OVERSIZE_GEOMETRY'
  | 'ERR_KV_UNKNOWN_MODEL'
  | 'ERR_KV_DUPLICATE_MODEL'
  | 'ERR_KV_DOUBLE_FREE'
  | 'ERR_KV_FOREIGN_BLOCK'
  | 'ERR_KV_RESERVE_UNAVAILABLE'
  /** The pool was disposed (`dispose()`, or by the engine that owned it). */
  | 'ERR_KV_DISPOSED';

/**
 * A KV pool call was given something it cannot accept (a bad geometry, an unknown model, a block
 * that is not the model's or not allocated). Running out of memory is not an error: `alloc` and
 * `step` return `{ ok: false }` for that. A failed call changes nothing.
 */
export class KvError extends FineserveError {
  declare readonly code: KvErrorCode;

  constructor(code: KvErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** Codes a {@link ModelError} carries. */
export type ModelErrorCode =
  | 'ERR_MODEL_NOT_FOUND'
  | 'ERR_MODEL_CORRUPT'
  | 'ERR_MODEL_UNSUPPORTED'
  | 'ERR_MODEL_SHAPE_MISMATCH'
  | 'ERR_MODEL_BAD_WEIGHTS'
  | 'ERR_MODEL_CANCELLED'
  | 'ERR_MODEL_CONTEXT_TOO_LONG'
  | 'ERR_MODEL_PRECISION'
  | 'ERR_MODEL_TOKENIZER'
  /** Tokenizing one text ran past its time or memory budget (e.g. a tokenizer.json regex that backtracks): only that request fails. */
  | 'ERR_MODEL_TOKENIZER_BUDGET'
  /** Rendering one chat template ran past its time or memory budget (e.g. a template that loops 1e8 times): only that request fails. */
  | 'ERR_MODEL_TEMPLATE_BUDGET'
  | 'ERR_MODEL_WRITE'
  | 'ERR_MODEL_LOAD'
  /** The model was disposed (`dispose()`, or unloaded by the engine that loaded it). */
  | 'ERR_MODEL_DISPOSED';

/**
 * A model could not be loaded or used: the message names the file, the tensor or field and the
 * value (a truncated file, an unsupported architecture or tensor type, a shape that disagrees
 * with the configuration, NaN weights), or the load was cancelled.
 */
export class ModelError extends FineserveError {
  declare readonly code: ModelErrorCode;

  constructor(code: ModelErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** Codes of errors from running a model: a malformed step, bad sampling options, a busy executor. */
export type ExecutorErrorCode =
  | 'ERR_EXECUTOR_INVALID'
  | 'ERR_EXECUTOR_DEVICE'
  | 'ERR_EXECUTOR_BUSY'
  | 'ERR_SAMPLING_INVALID'
  | 'ERR_CALLBACK'
  /** The executor (or the ModelRunner owning it) was disposed. */
  | 'ERR_EXECUTOR_DISPOSED'
  /** A thread pool was used after `dispose()`. */
  | 'ERR_THREAD_POOL_DISPOSED';

/** Running a model failed; nothing was written to the KV cache. */
export class ExecutorError extends FineserveError {
  declare readonly code: ExecutorErrorCode;

  constructor(code: ExecutorErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** @internal The `code` a native error carries, if any. */
export function codeOf(err: unknown): string | undefined {
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** Codes of {@link EngineError}. */
export type EngineErrorCode =
  /** `generate` named a model that is not loaded (or is being unloaded). */
  | 'ERR_ENGINE_UNKNOWN_MODEL'
  /** `loadModel` used an id that is already loaded. */
  | 'ERR_ENGINE_DUPLICATE_MODEL'
  /** A request or option field has a bad value; the message names the field and the value. */
  | 'ERR_ENGINE_INVALID_REQUEST'
  /** The prompt (plus maxTokens) does not fit in the model's context. */
  | 'ERR_ENGINE_CONTEXT_EXCEEDED'
  /** The engine was closed. */
  | 'ERR_ENGINE_CLOSED'
  /** The requested device cannot be used. */
  | 'ERR_ENGINE_DEVICE'
  /** A request can never fit in the KV memory its model can get, even with the device idle. */
  | 'ERR_ENGINE_KV_OUT_OF_MEMORY'
  /** The local scheduler dropped the request: it cannot meet its TTFT SLO (`dropLate` models only). */
  | 'ERR_ENGINE_SLO_UNREACHABLE'
  /** The model was unloaded without draining while the request was queued or running. */
  | 'ERR_ENGINE_UNLOADED'
  /** No device can hold a model being loaded; the message names each device's failed constraint (memory, KV). */
  | 'ERR_ENGINE_PLACEMENT';

/** The serving engine rejected or ended a request; `code` says why. */
export class EngineError extends FineserveError {
  declare readonly code: EngineErrorCode;

  constructor(code: EngineErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}
