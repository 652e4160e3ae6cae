/**
 * Per-model feasibility before placement (notes §3.3 step 2): the TTFT SLO, and per TP degree the
 * SLO-limited max batch, the rate-limited min batch and the memory-limited batch, with data-parallel
 * replicas added until the model is satisfiable. Both the reference estimator (per-token average,
 * as its code has it) and our cost model plug in through {@link BatchEstimator}.
 * @module
 */
import type { CostEntry, CostModel } from './cost-model.js';
import { PlanError, requirePositive } from './errors.js';
import { interpolate } from './latency-model.js';
import type { DeviceSpec, ModelDemand, ModelSpec } from './types.js';

/** LMSYS-Chat p95 lengths the reference derives SLOs and placements from. */
export const P95_INPUT_TOKENS = 903;
export const P95_OUTPUT_TOKENS = 631;
/** The reference's planning lengths: 0.8 × the p95s. */
export const PLAN_INPUT_TOKENS = 0.8 * P95_INPUT_TOKENS;
export const PLAN_OUTPUT_TOKENS = 0.8 * P95_OUTPUT_TOKENS;
/** The reference's default SLO scale and buffer. */
export const DEFAULT_SLO_SCALE = 40;
export const SLO_BUFFER_MS = 4;
/** The launcher caps `max_num_seqs` at 256. */
export const MAX_BATCH_CAP = 256;

/** Batch-dependent latencies of a replica at the planning lengths. */
export interface BatchEstimator {
  /** TTFT of a batch of `batch` prompts of `inputTokens` each, ms. */
  ttftMs(batch: number, inputTokens: number): number;
  /** Time to decode `outputTokens` tokens for each of `batch` sequences, ms. */
  decodeMs(batch: number, outputTokens: number): number;
}

/**
 * The reference's estimator: per-token latency averaged over the profiled lengths, scaled linearly
 * to the target length; piecewise-linear between batch sizes, extrapolated linearly beyond them.
 */
export function referenceEstimator(entry: CostEntry): BatchEstimator {
  const m = entry.latency;
  const ttftPerToken = m.batches.map((_, bi) => mean(m.lengths.map((len, li) => m.ttftMs[li]![bi]! / len)));
  const tpot = m.batches.map((_, bi) => mean(m.lengths.map((_, li) => m.tpotMs[li]![bi]!)));
  return {
    ttftMs: (b, input) => interpolate(m.batches, ttftPerToken, b) * input,
    decodeMs: (b, output) => interpolate(m.batches, tpot, b) * output,
  };
}

/** Our estimator: the cost model's bilinear fit, which keeps the batch × length interaction. */
export function costModelEstimator(entry: CostEntry): BatchEstimator {
  const m = entry.latency;
  return {
    ttftMs: (b, input) => m.prefillMs(b, b * input),
    decodeMs: (b, output) => m.decodeMs(b, PLAN_INPUT_TOKENS + output / 2) * output,
  };
}

/**
 * The reference's base GPU count for a model (4 if ≥ 60B, 2 if ≥ 30B, else 1; AWQ needs a
 * quarter, at least 1), moved to the nearest profiled TP.
 */
export function baseTp(costModel: CostModel, spec: ModelSpec): number {
  const entry = costModel.entry(spec.family, spec.precision, costModel.tpOptions(spec.family, spec.precision)[0] ?? 1, spec.id);
  const billions = entry.shape.params / 1e9;
  let base = billions >= 60 ? 4 : billions >= 30 ? 2 : 1;
  if (entry.precision.qformat === 'awq') base = Math.max(1, Math.floor(base / 4));
  const tps = costModel.tpOptions(spec.family, spec.precision);
  return tps.find((t) => t >= base) ?? tps.at(-1) ?? 1;
}

/** TTFT SLO of a model: its own, else batch-1 TTFT at 903 tokens on the base TP × scale + 4 ms. */
export function sloMs(costModel: CostModel, spec: ModelSpec, sloScale = DEFAULT_SLO_SCALE): number {
  if (spec.slo !== undefined) return requirePositive(spec.id, 'slo.ttftMs', spec.slo.ttftMs);
  const entry = costModel.entry(spec.family, spec.precision, baseTp(costModel, spec), spec.id);
  return referenceEstimator(entry).ttftMs(1, P95_INPUT_TOKENS) * sloScale + SLO_BUFFER_MS;
}

/** Batch bounds of one replica at one TP degree. */
export interface BatchBounds {
  readonly sloMaxBatch: number;
  readonly rateMinBatch: number;
  readonly cacheMaxBatch: number;
}

/** Requests per second a replica completes at batch `b` (the reference's b / (TTFT + decode)). */
export function throughputAt(est: BatchEstimator, b: number): number {
  return (b / (est.ttftMs(b, PLAN_INPUT_TOKENS) + est.decodeMs(b, PLAN_OUTPUT_TOKENS))) * 1000;
}

/** SLO-, rate- and memory-limited batch sizes (notes §3.3 step 2); rateMinBatch is Infinity if unreachable. */
export function batchBounds(est: BatchEstimator, entry: CostEntry, slo: number, rate: number, deviceBytes: number): BatchBounds {
  let sloMaxBatch = 0;
  while (sloMaxBatch < 4096 && est.ttftMs(sloMaxBatch + 1, PLAN_INPUT_TOKENS) <= slo) sloMaxBatch++;
  let rateMinBatch = Infinity;
  for (let b = 1; b <= 4096; b++) {
    if (throughputAt(est, b) >= rate) {
      rateMinBatch = b;
      break;
    }
  }
  const kvPerSeq = (PLAN_INPUT_TOKENS + PLAN_OUTPUT_TOKENS) * entry.kvBytesPerToken;
  const free = deviceBytes * entry.tp - (entry.weightBytes + entry.activationBytes);
  const cacheMaxBatch = Math.max(0, Math.floor(free / kvPerSeq));
  return { sloMaxBatch, rateMinBatch, cacheMaxBatch };
}

/** Options of {@link modelDemand}. */
export interface DemandOptions {
  readonly sloScale?: number;
  /** Largest TP group (GPUs per node). */
  readonly maxTp: number;
  /** Most replicas to try before giving up. */
  readonly maxReplicas: number;
  /** The reference divides rates by replicas with Python's `//`, flooring fractional rates. */
  readonly floorRateSplit?: boolean;
  /** Limit TP to this one degree (the Prism baseline uses the base GPU count). */
  readonly onlyTp?: number;
}

/**
 * Chooses TP and replicas the reference's way: among satisfiable TP degrees, the one with the
 * smallest rate-limited batch (least KV), adding replicas until `rateMin ≤ min(cacheMax, sloMax)`.
 */
export function modelDemand(
  costModel: CostModel,
  spec: ModelSpec,
  device: DeviceSpec,
  makeEstimator: (e: CostEntry) => BatchEstimator,
  options: DemandOptions,
): ModelDemand {
  requirePositive(spec.id, 'rate', spec.rate, true);
  const slo = sloMs(costModel, spec, options.sloScale);
  const tps = options.onlyTp !== undefined ? [options.onlyTp] : costModel.tpOptions(spec.family, spec.precision).filter((t) => t <= options.maxTp);
  if (tps.length === 0) {
    throw new PlanError('ERR_PLAN_INPUT', spec.id, 'precision', `no profiled TP degree of ${spec.family} ${spec.precision} fits ${options.maxTp} GPUs per node`);
  }
  let best: ModelDemand | undefined;
  let fallbackTp: number | undefined;
  for (const tp of tps) {
    const entry = costModel.entry(spec.family, spec.precision, tp, spec.id);
    const est = makeEstimator(entry);
    for (let dp = 1; dp <= options.maxReplicas; dp++) {
      const rate = options.floorRateSplit === true && dp > 1 ? Math.floor(spec.rate / dp) : spec.rate / dp;
      const b = batchBounds(est, entry, slo, rate, device.memoryBytes);
      const feasible = b.rateMinBatch <= Math.min(b.cacheMaxBatch, b.sloMaxBatch);
      const d: ModelDemand = { id: spec.id, tp, replicas: dp, sloMs: slo, ...b, feasible };
      if (feasible) {
        if (best === undefined || d.rateMinBatch < best.rateMinBatch) best = d;
        break;
      }
      if (dp === 1 && b.cacheMaxBatch > 0 && fallbackTp === undefined) fallbackTp = tp;
    }
  }
  if (best !== undefined) return best;
  // Not satisfiable: serve it anyway on the TP that fits, once; the SLO will be missed under load.
  const tp = fallbackTp ?? tps.at(-1)!;
  const entry = costModel.entry(spec.family, spec.precision, tp, spec.id);
  const b = batchBounds(makeEstimator(entry), entry, slo, spec.rate, device.memoryBytes);
  return { id: spec.id, tp, replicas: 1, sloMs: slo, ...b, feasible: false };
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
