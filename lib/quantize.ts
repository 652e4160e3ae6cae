/**
 * Writing quantized GGUF files (Q8_0, Q4_0, Q4_K, Q6_K and the Q4_K_M mix) from F32/F16/BF16 ones,
 * quantized the way llama-quantize does (its per-tensor rules included), so llama.cpp-based tools
 * load them. The work runs on a native worker.
 * @module
 */
import { runCancellable } from './cancellable.js';
import { codeOf, ModelError, type ModelErrorCode } from './errors.js';
import { loadNative } from './native/loader.js';
import type { QuantizedGguf } from './data-types.js';

export type { QuantizedGguf } from './data-types.js';

/**
 * GGUF quant types fineserve writes. `q4_k_m` is llama-quantize's Q4_K_M mix (Q4_K, with Q6_K for
 * the output projection and for attn_v / ffn_down in some layers); `q4_k` is Q4_K with a Q6_K output
 * projection (llama.cpp's file type Q4_K_S without its few Q5_K tensors); `q6_k` is Q6_K throughout.
 */
export type GgufQuantType = 'q8_0' | 'q4_0' | 'q4_k' | 'q6_k' | 'q4_k_m';

/** Options of {@link quantizeGguf}. */
export interface QuantizeGgufOptions {
  readonly onProgress?: (fraction: number) => void;
  /** Aborting cancels the write (no partial file is left) and rejects with `ERR_MODEL_CANCELLED`. */
  readonly signal?: AbortSignal;
}

/** Every {@link GgufQuantType}, in the order the CLI lists them. */
export const GGUF_QUANT_TYPES: readonly GgufQuantType[] = ['q8_0', 'q4_0', 'q4_k', 'q6_k', 'q4_k_m'];

/**
 * Writes `src` (a GGUF file) to `dst` with its weight matrices in `type`, each tensor's type chosen
 * by llama-quantize's rules (a row that is not whole blocks of 256 falls back to Q8_0, of 32 keeps
 * its type); metadata (tokenizer included) is copied unchanged except `general.file_type`. Rejects with `ModelError` naming the
 * file and tensor on anything it cannot convert.
 */
export async function quantizeGguf(src: string, dst: string, type: GgufQuantType, options: QuantizeGgufOptions = {}): Promise<QuantizedGguf> {
  if (!GGUF_QUANT_TYPES.includes(type)) {
    throw new ModelError('ERR_MODEL_PRECISION', `type = ${JSON.stringify(type)}: GGUF files can be written as ${GGUF_QUANT_TYPES.join(', ')}`);
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
