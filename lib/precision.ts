/**
 * Precisions: what a model's weights, activations and KV cache are stored and computed in. One
 * table maps the shorthand names users write (`'w4a16-kv8'`) to {@link PrecisionSpec} objects;
 * everything else (loading, the runner's KV geometry, benchmarks) reads the spec.
 * @module
 */
import { ModelError } from './errors.js';
import type { KvFormat } from './kv-pool.js';

/**
 * How the weights of the linear layers are stored.
 * - `source`: as the file holds them (F32/F16/BF16, or a GGUF quant type such as Q8_0/Q4_0/Q4_K/Q6_K), used as they are.
 * - `f32` / `f16` / `bf16`: every matrix (embedding, linears, output) converted to that type at
 *   load, rounded to nearest even; norms stay f32. Made from F32/F16/BF16 files only.
 * - `w8a8`: INT8 per output channel; activations INT8, dynamic per token.
 * - `fp8`: FP8 E4M3 per output channel; activations E4M3, dynamic per token.
 * - `w4a16`: INT4 asymmetric in groups (default 128), activation-aware scaling (AWQ) when calibrated.
 * - `w4a8`: FireQ: INT4 with FP8 group scales; activations E4M3 per token; channel smoothing when calibrated.
 */
export type WeightFormat = 'source' | 'f32' | 'f16' | 'bf16' | 'w8a8' | 'fp8' | 'w4a16' | 'w4a8';

/** What the activations entering a linear layer are quantized to (`f32`: not quantized). */
export type ActivationFormat = 'f32' | 'int8' | 'fp8';

/** A precision as an object: the three formats of a model. */
export interface PrecisionSpec {
  readonly weights: WeightFormat;
  readonly activations: ActivationFormat;
  /** KV cache element format; 8- and 4-bit formats carry per token × head scales where needed. */
  readonly kv: KvFormat;
  /** Elements per quantization group of `w4a16` / `w4a8` (a positive multiple of 32; default 128). */
  readonly group?: number;
}

/**
 * Precision names without a KV suffix: they name the weights (and so the activations). `auto`
 * keeps the file's weights as they are; `fp32`/`fp16`/`bf16` convert them to that type.
 */
export type BasePrecisionName = 'auto' | 'fp32' | 'fp16' | 'bf16' | 'w8a8' | 'fp8' | 'w4a16' | 'w4a8';

/** KV suffixes: `kv8` FP8 E4M3, `kvi8` INT8, `kv4` INT4 (per token × head scale), `kv16` f16, `kvbf16`, `kv32`. */
export type KvSuffix = 'kv8' | 'kvi8' | 'kv4' | 'kv16' | 'kvbf16' | 'kv32';

/**
 * A shorthand such as `'fp16'`, `'w8a8'`, `'w4a16-kv8'`, `'w4a8-kv4'` or `'auto'`. One default
 * per part: the base name sets the weights (`auto`: the file's, whatever their type); the KV
 * cache is what the suffix says, and without one it is f16, except for `fp32` (f32) and `bf16`
 * (bf16), whose names say otherwise. So plain `'auto'` and `'w8a8'` run an f16 cache, also over
 * an F32 file; `'w8a8-kvi8'` asks for an int8 one.
 */
export type PrecisionName = BasePrecisionName | `${BasePrecisionName}-${KvSuffix}`;

const BASE: Readonly<Record<BasePrecisionName, Omit<PrecisionSpec, 'group'>>> = {
  auto: { weights: 'source', activations: 'f32', kv: 'f16' },
  fp32: { weights: 'f32', activations: 'f32', kv: 'f32' },
  fp16: { weights: 'f16', activations: 'f32', kv: 'f16' },
  bf16: { weights: 'bf16', activations: 'f32', kv: 'bf16' },
  w8a8: { weights: 'w8a8', activations: 'int8', kv: 'f16' },
  fp8: { weights: 'fp8', activations: 'fp8', kv: 'f16' },
  w4a16: { weights: 'w4a16', activations: 'f32', kv: 'f16' },
  w4a8: { weights: 'w4a8', activations: 'fp8', kv: 'f16' },
};

const KV_SUFFIX: Readonly<Record<KvSuffix, KvFormat>> = {
  kv8: 'fp8',
  kvi8: 'int8',
  kv4: 'int4',
  kv16: 'f16',
  kvbf16: 'bf16',
  kv32: 'f32',
};

const ACTIVATIONS: Readonly<Record<WeightFormat, ActivationFormat>> = {
  source: 'f32',
  f32: 'f32',
  f16: 'f32',
  bf16: 'f32',
  w8a8: 'int8',
  fp8: 'fp8',
  w4a16: 'f32',
  w4a8: 'fp8',
};

/** Every KV cache format. */
export const KV_FORMATS: readonly KvFormat[] = ['f32', 'f16', 'bf16', 'fp8', 'int8', 'int4'];

/** Every shorthand name, for help texts and tests. */
export const PRECISION_NAMES: readonly PrecisionName[] = [
  ...(Object.keys(BASE) as BasePrecisionName[]).flatMap((b) => [b, ...(Object.keys(KV_SUFFIX) as KvSuffix[]).map((s) => `${b}-${s}` as const)]),
];

function invalid(message: string): never {
  throw new ModelError('ERR_MODEL_PRECISION', message);
}

/**
 * The spec of a shorthand or a (checked) spec object. Throws `ModelError` with code
 * `ERR_MODEL_PRECISION` naming the value for an unknown name, format or group.
 */
export function parsePrecision(precision: PrecisionName | PrecisionSpec): PrecisionSpec {
  if (typeof precision === 'string') {
    const [base, suffix, extra] = precision.split('-');
    const spec = BASE[base as BasePrecisionName];
    if (spec === undefined || extra !== undefined || (suffix !== undefined && KV_SUFFIX[suffix as KvSuffix] === undefined)) {
      invalid(`precision = "${precision}" is not a precision: use one of ${Object.keys(BASE).join(', ')}, optionally with -${Object.keys(KV_SUFFIX).join('/-')} (e.g. "w4a16-kv8")`);
    }
    const kv = suffix === undefined ? spec.kv : KV_SUFFIX[suffix as KvSuffix];
    return isGrouped(spec.weights) ? { ...spec, kv, group: 128 } : { ...spec, kv };
  }
  if (typeof precision !== 'object' || precision === null) invalid(`precision = ${String(precision)}: expected a name or { weights, activations, kv }`);
  const { weights, activations, kv, group } = precision;
  if (!(weights in ACTIVATIONS)) invalid(`precision.weights = ${JSON.stringify(weights)}: expected one of ${Object.keys(ACTIVATIONS).join(', ')}`);
  if (activations !== ACTIVATIONS[weights]) {
    invalid(`precision.activations = ${JSON.stringify(activations)}: weights "${weights}" compute with "${ACTIVATIONS[weights]}" activations`);
  }
  if (!KV_FORMATS.includes(kv)) invalid(`precision.kv = ${JSON.stringify(kv)}: expected one of ${KV_FORMATS.join(', ')}`);
  if (group !== undefined) {
    if (!isGrouped(weights)) invalid(`precision.group = ${group}: only w4a16 and w4a8 weights are grouped`);
    if (!Number.isInteger(group) || group < 32 || group % 32 !== 0 || group > 4096) {
      invalid(`precision.group = ${group}: must be a multiple of 32 between 32 and 4096`);
    }
  }
  return isGrouped(weights) ? { weights, activations, kv, group: group ?? 128 } : { weights, activations, kv };
}

function isGrouped(w: WeightFormat): boolean {
  return w === 'w4a16' || w === 'w4a8';
}

const BASE_OF_WEIGHTS: Readonly<Record<string, BasePrecisionName>> = { source: 'auto', f32: 'fp32', f16: 'fp16', bf16: 'bf16' };

function kvSuffix(kv: KvFormat, defaultKv: KvFormat): string {
  return kv === defaultKv ? '' : `-${(Object.keys(KV_SUFFIX) as KvSuffix[]).find((s) => KV_SUFFIX[s] === kv)}`;
}

/** The shortest name of a spec (`'w4a16-kv8'`), with the group appended when it is not 128. */
export function precisionName(spec: PrecisionSpec): string {
  const base = BASE_OF_WEIGHTS[spec.weights] ?? (spec.weights as BasePrecisionName);
  const group = spec.group !== undefined && spec.group !== 128 ? ` (group ${spec.group})` : '';
  return `${base}${kvSuffix(spec.kv, BASE[base].kv)}${group}`;
}

/** What a file's own weight types are called in a precision name, by the tensor type names the addon reports. */
const FILE_TYPE_NAMES: Readonly<Record<string, string>> = { F32: 'fp32', F16: 'fp16', BF16: 'bf16' };

/**
 * The name of a model's precision as it runs: for `source` weights (`'auto'`), the type its
 * weight matrices are stored in (`'q4_0'`, `'q4_k'`, `'fp16'`, ...: the type most of its
 * non-F32 tensors have, `'fp32'` when all are F32, as the norms are in every file), with the KV
 * suffix when the cache differs from that name's default (`'fp32-kv16'` for an F32 file under
 * `'auto'`); otherwise {@link precisionName}. `weightFormats` counts tensors per type, as
 * `Model.weightFormats`.
 */
export function servedPrecisionName(spec: PrecisionSpec, weightFormats: Readonly<Record<string, number>>): string {
  if (spec.weights !== 'source') return precisionName(spec);
  let top = 'F32';
  for (const [type, n] of Object.entries(weightFormats)) {
    if (type !== 'F32' && (top === 'F32' || n > weightFormats[top]!)) top = type;
  }
  const name = FILE_TYPE_NAMES[top] ?? top.toLowerCase();
  const defaultKv = name in BASE ? BASE[name as BasePrecisionName].kv : 'f16';
  return `${name}${kvSuffix(spec.kv, defaultKv)}`;
}
