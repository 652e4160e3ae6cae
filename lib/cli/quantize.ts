/**
 * `fineserve quantize IN.gguf OUT.gguf --type q8_0|q4_0|q4_k|q6_k|q4_k_m`: writes a quantized GGUF
 * that llama.cpp based tools load too.
 * @module
 */
import { parseArgs } from 'node:util';

import { GGUF_QUANT_TYPES, type GgufQuantType, quantizeGguf } from '../quantize.js';

/** Usage line of the command, for the main help text. */
export const QUANTIZE_USAGE = `  quantize IN.gguf OUT.gguf --type ${GGUF_QUANT_TYPES.join('|')}
                     write a GGUF with its weight matrices quantized as llama-quantize would`;

/** Runs the command; returns the exit code (2 for bad usage). */
export async function quantizeCommand(args: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: { type: { type: 'string' } }, strict: true, allowPositionals: true });
  } catch (err) {
    console.error(`fineserve quantize: ${(err as Error).message}\n\n${QUANTIZE_USAGE}`);
    return 2;
  }
  const [src, dst, ...extra] = parsed.positionals;
  const type = parsed.values.type;
  if (type !== undefined && !(GGUF_QUANT_TYPES as readonly string[]).includes(type)) {
    console.error(`fineserve quantize: --type ${type} is not a type it writes (expected ${GGUF_QUANT_TYPES.join(', ')})\n\n${QUANTIZE_USAGE}`);
    return 2;
  }
  if (src === undefined || dst === undefined || extra.length > 0 || type === undefined) {
    console.error(`fineserve quantize: expected IN.gguf OUT.gguf --type ${GGUF_QUANT_TYPES.join('|')}\n\n${QUANTIZE_USAGE}`);
    return 2;
  }
  const tty = process.stderr.isTTY;
  const result = await quantizeGguf(src, dst, type as GgufQuantType, {
    ...(tty && { onProgress: (f: number) => process.stderr.write(`\rquantizing ${(f * 100).toFixed(0)}%`) }),
  });
  if (tty) process.stderr.write('\n');
  const kept = result.kept.length === 0 ? '' : `; others ${result.kept.map((k) => `${k.name} ${k.type}`).join(', ')}`;
  const main = type === 'q4_k_m' ? 'Q4_K' : type.toUpperCase();
  console.log(`wrote ${result.path}: ${result.bytes} bytes, ${result.quantized} tensors ${main}${kept}`);
  return 0;
}
