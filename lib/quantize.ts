/**
 * Writing quantized GGUF files (Q8_0, Q4_0) from F32/F16/BF16 ones, quantized the way
 * llama-quantize does, so llama.cpp-based tools load them. The work runs on a native worker.
 * @module
 */
import { runCancellable } from './cancellable.js';
import { codeOf, ModelError, type ModelErrorCode } from './errors.js';
import { loadNative } from './native/loader.js';
import type { QuantizedGguf } from './data-types.js';

export type { QuantizedGguf } from './data-types.js';

/** GGUF quant types fineserve writes. */
export type GgufQuantType = 'q8_0' | 'q4_0';

/** Options of {@link quantizeGguf}. */
export interface QuantizeGgufOptions {
  readonly onProgress?: (fraction: number) => void;
  /** Aborting cancels the write (no partial file is left) and rejects with `ERR_MODEL_CANCELLED`. */
  readonly signal?: AbortSignal;
}

const TYPES: readonly GgufQuantType[] = ['q8_0', 'q4_0'];

/**
 * Writes `src` (a GGUF file) to `dst` with its weight matrices in `type`; metadata (tokenizer
 * included) is copied unchanged except `general.file_type`. Rejects with `ModelError` naming the
 * file and tensor on anything it cannot convert.
 */
export async function quantizeGguf(src: string, dst: string, type: GgufQuantType, options: QuantizeGgufOptions = {}): Promise<QuantizedGguf> {
  if (!TYPES.includes(type)) {
    throw new ModelError('ERR_MODEL_PRECISION', `type = ${JSON.stringify(type)}: GGUF files can be written as ${TYPES.join(' or ')}`);
  }
  return runCancellable((progress) => loadNative().binding.quantizeGguf(src, dst, type, progress), {
    onProgress: options.onProgress,
    signal: options.signal,
    abortedMessage: `quantizing ${src} was aborted before it started`,
    callbackMessage: `onProgress threw while quantizing ${src}; the write was cancelled`,
    typed: (err) => {
      const code = codeOf(err);
      return code?.startsWith('ERR_MODEL_') ? new ModelError(code as ModelErrorCode, (err as Error).message) : err;
    },
  });
}
