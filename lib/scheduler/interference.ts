/**
 * Precision-aware co-location interference from first principles (a fluid roofline). Each step
 * of a replica has work: FLOPs (2 × linear parameters per token, plus attention over the context)
 * and bytes (the weights streamed once, KV read by decoders, KV written). Against the device's peak
 * rate for the step's math format (tensor-core BF16 for FP16 and AWQ W4A16, which dequantises to
 * FP16; FP8 for W8A8; INT8 for QoQ W4A8) and its HBM bandwidth, and the step's solo time from the
 * profiles, that is a demand on compute and a demand on bandwidth, each a share of the device in
 * [0, 1]. Co-located steps share each resource: a step gets what the others leave of it, or at
 * least its proportional share when the resource is oversubscribed, and runs as slow as its worse
 * resource. So a memory-bound decoder (high bandwidth, low compute demand) beside a compute-bound
 * prefill (the reverse) barely slows either, two decoders slow each other by their bandwidth sum,
 * and a batch-1 decoder weighs much less than a 2,048-token prefill: work, not replica counts.
 * @module
 */
import type { CostEntry } from './cost-model.js';
import type { IterationShape } from './latency-model.js';

/** Peak rates of a device kind: dense tensor-core FLOP/s per math format and HBM bytes/s. */
export interface DevicePeaks {
  readonly bf16: number;
  readonly fp8: number;
  readonly int8: number;
  readonly hbm: number;
}

/**
 * NVIDIA datasheets, SXM parts, dense (no sparsity): H100 989 TFLOPS BF16, 1,979 FP8 and INT8,
 * 3.35 TB/s HBM3; H200 the same compute and 4.8 TB/s HBM3e.
 */
export const DEVICE_PEAKS: Readonly<Record<string, DevicePeaks>> = {
  h100: { bf16: 989e12, fp8: 1979e12, int8: 1979e12, hbm: 3.35e12 },
  h200: { bf16: 989e12, fp8: 1979e12, int8: 1979e12, hbm: 4.8e12 },
};

/** A step's demand on the device, as shares of its peak compute and bandwidth over the step. */
export interface StepDemand {
  readonly compute: number;
  readonly memory: number;
}

/** FLOPs and bytes of one iteration of `entry` of this shape, per device of its TP group. */
export function stepWork(entry: CostEntry, s: IterationShape): { flops: number; bytes: number } {
  const linear = entry.shape.params - entry.shape.embedParams;
  const tokens = s.prefillTokens + s.decodeSeqs;
  // Attention: QK and PV, 2 FLOPs each per head-dim element, over the context each token sees
  // (half the prompt on average for a prefill chunk).
  const prefillCtx = s.prefillSeqs > 0 ? s.prefillTokens / s.prefillSeqs / 2 : 0;
  const attn = 4 * entry.shape.layers * entry.shape.hidden * (s.prefillTokens * prefillCtx + s.decodeSeqs * s.decodeContext);
  const flops = (2 * linear * tokens + attn) / entry.tp;
  const kvRead = s.decodeSeqs * s.decodeContext * entry.kvBytesPerToken;
  const kvWrite = tokens * entry.kvBytesPerToken;
  const bytes = (tokens > 0 ? entry.weightBytes : 0) / entry.tp + (kvRead + kvWrite) / entry.tp;
  return { flops, bytes };
}

/** Peak FLOP/s of the format a precision's GEMMs run in. */
export function mathPeak(entry: CostEntry, peaks: DevicePeaks): number {
  const q = entry.precision.qformat;
  if (q === 'fp8' || q === 'fp8_kv8') return peaks.fp8;
  if (q === 'qoq') return peaks.int8;
  return peaks.bf16;
}

/** The step's demand given its solo time (ms), each share clamped to [0, 1]. */
export function stepDemand(entry: CostEntry, s: IterationShape, soloMs: number, peaks: DevicePeaks = DEVICE_PEAKS['h100']!): StepDemand {
  if (soloMs <= 0) return { compute: 0, memory: 0 };
  const w = stepWork(entry, s);
  const sec = soloMs / 1000;
  return { compute: Math.min(1, w.flops / mathPeak(entry, peaks) / sec), memory: Math.min(1, w.bytes / peaks.hbm / sec) };
}

/**
 * How much slower `self` runs while `others` run beside it: per resource, it gets what the others
 * leave (1 − their sum) or, when that is less, its proportional share of an oversubscribed
 * resource; the step stretches by its worst resource, never below 1.
 */
export function contendedSlowdown(self: StepDemand, others: readonly StepDemand[]): number {
  if (others.length === 0) return 1;
  let slow = 1;
  for (const key of ['compute', 'memory'] as const) {
    const mine = self[key];
    if (mine <= 0) continue;
    const rest = others.reduce((a, o) => a + o[key], 0);
    const got = Math.max(1 - rest, mine / (mine + rest));
    slow = Math.max(slow, mine / got);
  }
  return slow;
}
