/**
 * @internal What the addon's long calls (loadModel, generateModel; cpp/addon/progress_job.h) share
 * on this side: the user's onProgress and AbortSignal mapped onto the native `{ promise, cancel }`
 * handle, and its rejection turned into the typed error.
 * @module
 */
import { FineserveError, ModelError } from './errors.js';
import type { NativeJob } from './native/addon-types.js';

export type { NativeJob } from './native/addon-types.js';


/** @internal */
export interface CancellableOptions {
  readonly onProgress: ((fraction: number) => void) | undefined;
  readonly signal: AbortSignal | undefined;
  /** Message of the `ERR_MODEL_CANCELLED` error when `signal` is already aborted. */
  readonly abortedMessage: string;
  /** Message of the `ERR_CALLBACK` error when `onProgress` throws. */
  readonly callbackMessage: string;
  /** The typed error for a native rejection. */
  readonly typed: (err: unknown) => unknown;
}

/**
 * @internal Starts a native job with a progress callback and waits for it. An `onProgress` that
 * throws cancels the job, which then rejects with `ERR_CALLBACK` and that error as its cause: the
 * addon drops errors thrown on its progress path, so this is where they surface. A cancellation
 * that `signal` caused carries its reason as the cause.
 */
export async function runCancellable<T>(
  start: (onProgress: (fraction: number) => void) => NativeJob<T>,
  options: CancellableOptions,
): Promise<T> {
  const { onProgress, signal } = options;
  if (signal?.aborted) {
    throw new ModelError('ERR_MODEL_CANCELLED', options.abortedMessage, { cause: signal.reason });
  }
  let callbackError: unknown;
  const handle = start((fraction) => {
    if (callbackError !== undefined || onProgress === undefined) return;
    try {
      onProgress(fraction);
    } catch (err) {
      callbackError = err;
      handle.cancel();
    }
  });
  const onAbort = () => handle.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await handle.promise;
  } catch (err) {
    if (callbackError !== undefined) {
      throw new FineserveError('ERR_CALLBACK', options.callbackMessage, { cause: callbackError });
    }
    const e = options.typed(err);
    if (e instanceof ModelError && e.code === 'ERR_MODEL_CANCELLED' && signal?.aborted) {
      throw new ModelError('ERR_MODEL_CANCELLED', e.message, { cause: signal.reason });
    }
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
