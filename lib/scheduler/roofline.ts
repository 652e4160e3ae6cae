/**
 * A first-principles step-latency model (a roofline): what one iteration of a model at a precision
 * and TP degree costs each device of its group in FLOPs, HBM bytes and NVLink bytes, turned into
 * time against the device's datasheet peaks, with a few efficiencies fitted to the profiles
 * (lib/scheduler/roofline-fit.ts):
 *
 *   step = overhead + smoothmax(compute / (eC · peak of the math format), bytes / (eM · HBM)) + all-reduce
 *
 * Overhead is per step (kernel launches, scheduler, sampling; vLLM's decode runs as CUDA graphs, its
 * prefill does not, so the two kinds have their own). The linear layers run in the precision's math
 * format (BF16 for FP16 and AWQ W4A16, which dequantises; FP8 for W8A8; INT8 for QoQ W4A8);
 * attention runs in BF16 whatever the KV format (FlashAttention dequantises FP8/INT4 KV on load).
 * Bytes: the weights streamed once per step, KV read by decoders over their context, KV written for
 * every new token, and the activations a token moves through each layer.
 * @module
 */
import type { ModelShapeInfo, PrecisionInfo } from './catalog.js';
import { DEVICE_PEAKS, type DevicePeaks } from './interference.js';
import type { IterationShape, LatencyModel } from './latency-model.js';

/**
 * NVLink 4 on H100 and H200 SXM: 900 GB/s per GPU, both directions together, so 450 GB/s each
 * way, which is what a ring all-reduce streams at (NVIDIA H100/H200 datasheets).
 */
export const NVLINK_BYTES_PER_S = 450e9;

/** Bytes per activation element moved between kernels: the residual stream stays 16-bit in every format here. */
const ACTIVATION_BYTES = 2;

/** What the roofline needs of a configuration (a CostEntry has all of it). */
export interface RooflineConfig {
  readonly shape: ModelShapeInfo;
  readonly precision: PrecisionInfo;
  readonly tp: number;
  /** Whole model, all devices. */
  readonly weightBytes: number;
  /** Whole model, all layers, K and V. */
  readonly kvBytesPerToken: number;
}

/** A step's work per device of its TP group, as seconds at peak rate. */
export interface StepTimes {
  /** Linear layers at the math format's peak plus attention at BF16 peak. */
  readonly compute: number;
  /** HBM bytes at peak bandwidth. */
  readonly memory: number;
  /** Two all-reduces per layer over NVLink (0 at TP 1), not overlapped with compute in vLLM. */
  readonly network: number;
}

/** Peak FLOP/s of the format a precision's GEMMs run in. */
export function gemmPeak(precision: PrecisionInfo, peaks: DevicePeaks): number {
  const q = precision.qformat;
  if (q === 'fp8' || q === 'fp8_kv8') return peaks.fp8;
  if (q === 'qoq') return peaks.int8;
  return peaks.bf16;
}

/** FLOPs, bytes and all-reduce traffic of one iteration of `cfg` of this shape, as peak-rate seconds per device. */
export function stepTimes(cfg: RooflineConfig, s: IterationShape, peaks: DevicePeaks = DEVICE_PEAKS['h100']!): StepTimes {
  const { shape, tp } = cfg;
  const tokens = s.prefillTokens + s.decodeSeqs;
  if (tokens <= 0) return { compute: 0, memory: 0, network: 0 };
  // The LM head is the output half of embedParams; it runs once per sequence (vLLM computes
  // logits for a prefill's last token only); the input embedding is a gather, no GEMM.
  const lmHead = shape.embedParams / 2;
  const linear = shape.params - shape.embedParams;
  const seqs = s.prefillSeqs + s.decodeSeqs;
  const gemmFlops = 2 * linear * tokens + 2 * lmHead * seqs;
  // Attention: QK and PV, 2 FLOPs per multiply-add, over the context each token sees (causal
  // prefill: L²/2 pairs per sequence of L).
  const attnWidth = shape.heads * shape.headDim;
  const perSeq = s.prefillSeqs > 0 ? s.prefillTokens / s.prefillSeqs : 0;
  const pairs = s.prefillSeqs * (perSeq * perSeq) / 2 + s.decodeSeqs * s.decodeContext;
  const attnFlops = 4 * shape.layers * attnWidth * pairs;
  const compute = (gemmFlops / gemmPeak(cfg.precision, peaks) + attnFlops / peaks.bf16) / tp;

  const weights = cfg.weightBytes - lmHead * 2;
  const kv = (s.decodeSeqs * s.decodeContext + tokens) * cfg.kvBytesPerToken;
  // Per token per layer: attention input, output, projection out and residual, MLP in and out
  // (6 × hidden, replicated across TP ranks) and gate, up, product (3 × intermediate, split).
  const activations = tokens * shape.layers * ACTIVATION_BYTES * (6 * shape.hidden * tp + 3 * shape.intermediate);
  const memory = (weights + kv + activations) / tp / peaks.hbm;

  const allReduce = tp > 1 ? 2 * shape.layers * tokens * shape.hidden * ACTIVATION_BYTES * ((2 * (tp - 1)) / tp) : 0;
  return { compute, memory, network: allReduce / NVLINK_BYTES_PER_S };
}

/** The fitted parameters of one configuration. Efficiencies are achieved fractions of peak, in (0, 1]. */
export interface RooflineParams {
  readonly prefillOverheadMs: number;
  readonly decodeOverheadMs: number;
  readonly computeEff: number;
  readonly memoryEff: number;
}

/**
 * Exponent of the smooth maximum (a^p + b^p)^(1/p): compute and memory overlap within a kernel
 * but not perfectly, so near the ridge a step is slower than the larger of the two alone. 2 held
 * out best of 2, 3, 4 and 8 (TPOT at batch 32 from 1–16: max error 12.7 % vs 16.4 % at 4); TTFT
 * barely moves.
 */
export const SMOOTH_MAX_P = 2;

/** Step time in ms from its peak-rate times, an overhead and the efficiencies. */
export function rooflineMs(t: StepTimes, overheadMs: number, p: RooflineParams): number {
  const c = t.compute / p.computeEff;
  const m = t.memory / p.memoryEff;
  const bound = (c ** SMOOTH_MAX_P + m ** SMOOTH_MAX_P) ** (1 / SMOOTH_MAX_P);
  return overheadMs + 1000 * (bound + t.network);
}

/** Time of a step: the prefill overhead when it prefills anything, else the decode one. */
export function rooflineStepMs(cfg: RooflineConfig, s: IterationShape, p: RooflineParams, peaks: DevicePeaks = DEVICE_PEAKS['h100']!): number {
  const overhead = s.prefillTokens > 0 ? p.prefillOverheadMs : p.decodeOverheadMs;
  return rooflineMs(stepTimes(cfg, s, peaks), overhead, p);
}

/** The roofline as a {@link LatencyModel}, on one device kind (H100 by default; H200 only changes HBM). */
export class RooflineLatencyModel implements LatencyModel {
  readonly config: RooflineConfig;
  readonly params: RooflineParams;
  readonly peaks: DevicePeaks;

  constructor(config: RooflineConfig, params: RooflineParams, peaks: DevicePeaks = DEVICE_PEAKS['h100']!) {
    this.config = config;
    this.params = params;
    this.peaks = peaks;
  }

  /** The same fit on another device kind: the efficiencies carry over, the peaks change. */
  on(peaks: DevicePeaks): RooflineLatencyModel {
    return new RooflineLatencyModel(this.config, this.params, peaks);
  }

  prefillMs(batch: number, tokens: number): number {
    return rooflineStepMs(this.config, { prefillSeqs: Math.max(1, batch), prefillTokens: tokens, decodeSeqs: 0, decodeContext: 0 }, this.params, this.peaks);
  }

  decodeMs(batch: number, context: number): number {
    return rooflineStepMs(this.config, { prefillSeqs: 0, prefillTokens: 0, decodeSeqs: batch, decodeContext: context }, this.params, this.peaks);
  }

  observe(): void {}
}
