/**
 * GFLOP/s and GB/s beside each tokens/s figure, and the share of the FMA roofline: what a
 * throughput means for the kernels, so a ratio can be read against what the CPU can do.
 * @module
 */
import type { MetricResult } from './measure.js';
import type { Roofline } from './roofline.js';

export interface ModelShape {
  readonly layers: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  /** Bytes of all weights: what one forward step reads at least once. */
  readonly weightBytes: number;
  /** Prompt tokens per forward step of fineserve's prefill. */
  readonly maxBatchTokens: number;
}

export interface Rates {
  /** Matrix-product GFLOP/s of each engine (null where it did not run). */
  readonly gflops: { readonly fineserve: number; readonly peer: number | null };
  /** Weight GB/s of each engine. */
  readonly gbps: { readonly fineserve: number; readonly peer: number | null };
  /** fineserve's GFLOP/s over the FMA roofline times the threads. */
  readonly fmaPeakFraction: number;
  /** fineserve's GB/s over the copy roofline (one thread's; memory is shared). */
  readonly copyFraction: number;
}

/** Weights per token in the layers' matrices (q, k, v, o, gate, up, down). */
function layerWeights(m: ModelShape): number {
  const q = m.heads * m.headDim, kv = m.kvHeads * m.headDim;
  return m.layers * (m.hiddenSize * (q + 2 * kv) + q * m.hiddenSize + 3 * m.hiddenSize * m.intermediateSize);
}

export function rates(m: ModelShape, r: MetricResult, roofline: Roofline, threads: number): Rates {
  const d = r.detail as { promptTokens?: number; sequences?: number };
  const head = m.vocabSize * m.hiddenSize;
  let flopsPerToken: number, bytesPerToken: number;
  if (d.sequences === undefined) {
    // Prefill: every prompt token through the layers, the LM head once; one weight pass per step.
    const n = d.promptTokens ?? 1;
    flopsPerToken = 2 * (layerWeights(m) + head / n);
    bytesPerToken = (m.weightBytes * Math.ceil(n / m.maxBatchTokens)) / n;
  } else {
    // Decode: each step makes one token per sequence and reads every weight once.
    flopsPerToken = 2 * (layerWeights(m) + head);
    bytesPerToken = m.weightBytes / d.sequences;
  }
  const gflops = (tps: number) => (tps * flopsPerToken) / 1e9;
  const gbps = (tps: number) => (tps * bytesPerToken) / 1e9;
  return {
    gflops: { fineserve: gflops(r.fineserve), peer: r.peer === null ? null : gflops(r.peer) },
    gbps: { fineserve: gbps(r.fineserve), peer: r.peer === null ? null : gbps(r.peer) },
    fmaPeakFraction: gflops(r.fineserve) / (roofline.fmaGflops * threads),
    copyFraction: gbps(r.fineserve) / roofline.copyGBps,
  };
}
