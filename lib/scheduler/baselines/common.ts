/**
 * What the baseline placements share: per-model replicas at the reference's base TP degree, with
 * batch bounds from the reference estimator, so baselines differ from each other only in where
 * they put replicas and how they split KV.
 * @module
 */
import type { CostEntry, CostModel } from '../cost-model.js';
import { baseTp, MAX_BATCH_CAP, modelDemand, referenceEstimator, throughputAt } from '../demand.js';
import type { PlanInput } from '../types.js';

/** One replica to place. */
export interface BaselineReplica {
  readonly model: string;
  readonly replica: number;
  readonly entry: CostEntry;
  readonly rate: number;
  readonly sloMs: number;
  readonly maxBatch: number;
  readonly minBatch: number;
  /** Share of its devices' time it needs at its SLO-limited batch: rate / throughput(maxBatch). */
  readonly load: number;
}

/** Replicas of every model at its base TP, as many as its rate needs (at most one per device). */
export function baselineReplicas(costModel: CostModel, input: PlanInput): BaselineReplica[] {
  const out: BaselineReplica[] = [];
  for (const spec of input.models) {
    const tp = baseTp(costModel, spec);
    const d = modelDemand(costModel, spec, input.devices[0]!, referenceEstimator, {
      ...(input.sloScale !== undefined && { sloScale: input.sloScale }),
      maxTp: tp,
      maxReplicas: Math.max(1, Math.floor(input.devices.length / tp)),
      onlyTp: tp,
    });
    const entry = costModel.entry(spec.family, spec.precision, tp, spec.id);
    const est = referenceEstimator(entry);
    const maxBatch = Math.max(1, Math.min(d.sloMaxBatch, MAX_BATCH_CAP));
    const rate = spec.rate / d.replicas;
    const minBatch = Number.isFinite(d.rateMinBatch) ? d.rateMinBatch : maxBatch;
    for (let r = 0; r < d.replicas; r++) {
      out.push({ model: spec.id, replica: r, entry, rate, sloMs: d.sloMs, maxBatch, minBatch, load: rate / throughputAt(est, maxBatch) });
    }
  }
  return out;
}
