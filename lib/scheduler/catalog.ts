/**
 * What the planner and the simulator know about models and precisions without loading them:
 * model shapes (layers, KV heads, parameters) and, per precision, the bits of weights,
 * activations and KV. KV bytes per token follow notes §1.2 (vLLM paged layout, TP 1).
 * @module
 */
import { PlanError } from './errors.js';

/** KV cache element formats the cost model knows. */
export type KvElementFormat = 'fp16' | 'fp8' | 'int4';

/** A precision as the planner sees it. */
export interface PrecisionInfo {
  /** Our shorthand, e.g. `w4a16`. */
  readonly name: string;
  /** The reference system's `qformat` name, used to find profile rows. */
  readonly qformat: string;
  /** Effective bits per linear-layer weight, group scales included. */
  readonly weightBits: number;
  readonly activationBits: number;
  readonly kv: KvElementFormat;
  /**
   * Tokens per KV block in the engine that serves it: the reference launches vLLM with
   * `--block-size 32` (notes §5), OmniServe hard-codes 64 for QoQ.
   */
  readonly tokensPerBlock: number;
}

/** Precisions with reference profiles, by our shorthand. */
export const PRECISIONS: Readonly<Record<string, PrecisionInfo>> = {
  fp16: { name: 'fp16', qformat: 'org', weightBits: 16, activationBits: 16, kv: 'fp16', tokensPerBlock: 32 },
  fp8: { name: 'fp8', qformat: 'fp8', weightBits: 8, activationBits: 8, kv: 'fp16', tokensPerBlock: 32 },
  'fp8-kv8': { name: 'fp8-kv8', qformat: 'fp8_kv8', weightBits: 8, activationBits: 8, kv: 'fp8', tokensPerBlock: 32 },
  w4a16: { name: 'w4a16', qformat: 'awq', weightBits: 4.25, activationBits: 16, kv: 'fp16', tokensPerBlock: 32 },
  'w4a8-kv4': { name: 'w4a8-kv4', qformat: 'qoq', weightBits: 4.25, activationBits: 8, kv: 'int4', tokensPerBlock: 64 },
};

/** A model architecture. */
export interface ModelShapeInfo {
  /** Name as in the profiles, e.g. `llama-3.1-8b`. */
  readonly family: string;
  readonly params: number;
  /** Embedding and LM-head parameters, which stay 16-bit in every quantized format here. */
  readonly embedParams: number;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Model width (d_model), for attention FLOPs in the interference model. */
  readonly hidden: number;
  /** Query heads (× headDim is the attention width; Qwen3-32B's 8,192 is not its d_model). */
  readonly heads: number;
  /** MLP width, for the activation bytes a prefill moves (lib/scheduler/roofline.ts). */
  readonly intermediate: number;
}

/** The shapes in the reference profiles (HF configs). */
export const MODEL_FAMILIES: Readonly<Record<string, ModelShapeInfo>> = {
  'llama-3.1-8b': { family: 'llama-3.1-8b', params: 8.03e9, embedParams: 1.05e9, layers: 32, kvHeads: 8, headDim: 128, hidden: 4096, heads: 32, intermediate: 14336 },
  'qwen-3-32b': { family: 'qwen-3-32b', params: 32.8e9, embedParams: 1.56e9, layers: 64, kvHeads: 8, headDim: 128, hidden: 5120, heads: 64, intermediate: 25600 },
  'llama-3.1-70b': { family: 'llama-3.1-70b', params: 70.6e9, embedParams: 2.1e9, layers: 80, kvHeads: 8, headDim: 128, hidden: 8192, heads: 64, intermediate: 28672 },
};

/** Looks up a precision; `source`/`field` name the input in the error. */
export function precisionInfo(name: string, source = 'precision', field = 'precision'): PrecisionInfo {
  const p = PRECISIONS[name];
  if (p === undefined) {
    throw new PlanError('ERR_PLAN_INPUT', source, field, `unknown precision "${name}" (known: ${Object.keys(PRECISIONS).join(', ')})`);
  }
  return p;
}

/** Looks up a model family. */
export function familyInfo(name: string, source = 'model', field = 'family'): ModelShapeInfo {
  const f = MODEL_FAMILIES[name];
  if (f === undefined) {
    throw new PlanError('ERR_PLAN_INPUT', source, field, `unknown model family "${name}" (known: ${Object.keys(MODEL_FAMILIES).join(', ')})`);
  }
  return f;
}

/**
 * KV bytes per token, all layers, K and V, at TP 1 (notes §1.2). INT4 KV carries an FP16 scale
 * and zero per token per head (QoQ), which is why it is 544 B, not 512 B, per layer per K or V.
 */
export function kvBytesPerToken(shape: ModelShapeInfo, kv: KvElementFormat): number {
  const elems = shape.kvHeads * shape.headDim;
  const perLayerPerKv = kv === 'fp16' ? elems * 2 : kv === 'fp8' ? elems : elems / 2 + shape.kvHeads * 4;
  return 2 * shape.layers * perLayerPerKv;
}

/** Weight bytes at a precision: quantized linear layers plus 16-bit embeddings. */
export function weightBytes(shape: ModelShapeInfo, p: PrecisionInfo): number {
  return Math.round((shape.params - shape.embedParams) * (p.weightBits / 8) + shape.embedParams * 2);
}

/**
 * Activation and runtime memory of one engine, as the reference's placement budgets it:
 * 3 GB × activation bits / 16 plus 2 × 0.8 GB (CUDA graphs, allocator slack).
 */
export function activationBytes(p: PrecisionInfo): number {
  return 3e9 * (p.activationBits / 16) + 2 * 0.8e9;
}

/** Where a (family, qformat) pair's rows are in the profiles (QoQ was profiled on Llama-3-8B). */
export function profileModelName(family: string, qformat: string): string {
  return family === 'llama-3.1-8b' && qformat === 'qoq' ? 'llama-3-8b' : family;
}
