/**
 * What the baseline placements share, and only that: one engine (replica) per model, as Prism,
 * MuxServe and vLLM deploy them, none of them with the reference FineServe's TP/data-parallel
 * rule. Each baseline picks the TP degree its own paper does (see `tp` below) and places by its
 * own rule; every one keeps the per-device KV floor, so no baseline is handicapped by a plan that
 * leaves a device without KV.
 * @module
 */
import type { CostEntry, CostModel } from '../cost-model.js';
import { batchBounds, MAX_BATCH_CAP, PLAN_INPUT_TOKENS, PLAN_OUTPUT_TOKENS, referenceEstimator, sloMs, throughputAt } from '../demand.js';
import { keepsKvFloor, staticBytesPerDevice, USABLE_MEMORY_FRACTION, type DeviceState } from '../placement-state.js';
import type { ModelSpec, PlanInput } from '../types.js';

/** One replica to place. */
export interface BaselineReplica {
  readonly model: string;
  readonly replica: number;
  readonly entry: CostEntry;
  readonly rate: number;
  readonly sloMs: number;
  /** vLLM's default `max_num_seqs` (256): the baselines have no SLO-derived batch cap. */
  readonly maxBatch: number;
  readonly minBatch: number;
  /** Share of its devices' time it needs: rate / throughput at the largest profiled batch. */
  readonly load: number;
  /** The reference's required memory for it (1.3 × weights + KV of its rate-limited batch), for `spart` shares. */
  readonly requiredBytes: number;
}

/** How a baseline chooses a model's TP degree. */
export type BaselineTp =
  /** The smallest profiled TP whose shard fits a device with its KV floor (vLLM, Prism). */
  | 'fit'
  /** The smallest TP whose throughput carries the model's rate, else the largest (MuxServe's mesh sizing by popularity). */
  | 'compute';

/** One replica per model at the TP the rule gives. */
export function baselineReplicas(costModel: CostModel, input: PlanInput, rule: BaselineTp = 'fit'): BaselineReplica[] {
  const gpusPerNode = nodeSize(input);
  const memory = Math.min(...input.devices.map((d) => d.memoryBytes));
  return input.models.map((spec) => {
    const tps = costModel.tpOptions(spec.family, spec.precision).filter((t) => t <= gpusPerNode);
    const fits = tps.filter((t) => fitsEmptyDevice(costModel.entry(spec.family, spec.precision, t, spec.id), memory));
    let tp = fits[0] ?? tps.at(-1) ?? 1;
    if (rule === 'compute') tp = fits.find((t) => loadOf(costModel.entry(spec.family, spec.precision, t, spec.id), spec.rate) <= 1) ?? fits.at(-1) ?? tp;
    return replicaOf(costModel, input, spec, tp);
  });
}

function replicaOf(costModel: CostModel, input: PlanInput, spec: ModelSpec, tp: number): BaselineReplica {
  const entry = costModel.entry(spec.family, spec.precision, tp, spec.id);
  const slo = sloMs(costModel, spec, input.sloScale);
  const b = batchBounds(referenceEstimator(entry), entry, slo, spec.rate, input.devices[0]!.memoryBytes);
  const minBatch = Number.isFinite(b.rateMinBatch) ? Math.min(b.rateMinBatch, MAX_BATCH_CAP) : MAX_BATCH_CAP;
  return {
    model: spec.id,
    replica: 0,
    entry,
    rate: spec.rate,
    sloMs: slo,
    maxBatch: MAX_BATCH_CAP,
    minBatch: 1,
    load: loadOf(entry, spec.rate),
    requiredBytes: 1.3 * entry.weightBytes + minBatch * (PLAN_INPUT_TOKENS + PLAN_OUTPUT_TOKENS) * entry.kvBytesPerToken,
  };
}

function loadOf(entry: CostEntry, rate: number): number {
  return rate / throughputAt(referenceEstimator(entry), entry.latency.batches.at(-1) ?? 32);
}

function fitsEmptyDevice(entry: CostEntry, memoryBytes: number): boolean {
  const probe: DeviceState = { spec: { id: 'probe', memoryBytes }, node: 0, free: memoryBytes * USABLE_MEMORY_FRACTION, weightBytes: 0, activationBytes: 0, residents: [], pressure: 0 };
  return staticBytesPerDevice(entry) < probe.free && keepsKvFloor(probe, entry);
}

function nodeSize(input: PlanInput): number {
  const counts = new Map<number, number>();
  for (const d of input.devices) counts.set(d.node ?? 0, (counts.get(d.node ?? 0) ?? 0) + 1);
  return Math.max(...counts.values());
}
