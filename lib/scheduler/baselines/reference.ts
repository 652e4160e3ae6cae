/**
 * The reference FineServe placement exactly as its released code has it (notes §3.3, "slab-aware"):
 * offline and once; TP/DP from the per-token-average estimator; replicas largest-memory first;
 * every TP-subset of a node scored by how many "average co-located tokens" of KV its devices keep.
 * Its quirks are kept on purpose (rates split with integer division, 1.3 × weights in the memory
 * estimate, the free-memory check on the whole device), so comparisons are against what it does.
 * Its KV is sized as its resource manager does: device memory − 1.8 × the weights on it. A device
 * whose KV cannot hold every engine's minimum reservation (2048 tokens) would not start, so those
 * engines' models are listed unplaced and the plan is infeasible: rejected, not served badly.
 * With `kvFloor`, the same placement instead gets at least the per-device KV floor (10 % of usable
 * memory), which that memory physically has: the rules as they would run with the floor the
 * other planners keep.
 * @module
 */
import type { CostEntry, CostModel } from '../cost-model.js';
import { modelDemand, PLAN_INPUT_TOKENS, PLAN_OUTPUT_TOKENS, MAX_BATCH_CAP, referenceEstimator } from '../demand.js';
import {
  byNode,
  combinations,
  DEVICE_KV_FLOOR_FRACTION,
  finishPlan,
  initDevices,
  kvFloorBytes,
  place,
  staticBytesPerDevice,
  USABLE_MEMORY_FRACTION,
  validatePlanInput,
  type DeviceState,
} from '../placement-state.js';
import type { Placement, PlacementPlan, PlanInput, Unplaced } from '../types.js';

/** The reference's KV block size in GB for the mesh score: 2 × (head + 1, or + 2 for QoQ) × kv heads × kv bytes × 16 tokens. */
function blockGb(entry: CostEntry): number {
  const kvBytes = entry.precision.kv === 'fp16' ? 2 : entry.precision.kv === 'fp8' ? 1 : 0.5;
  const extra = entry.precision.qformat === 'qoq' ? 2 : 1;
  return (2 * (entry.shape.headDim + extra) * entry.shape.kvHeads * kvBytes * 16) / 2 ** 30;
}

/** Options of {@link planReference}. */
export interface ReferencePlanOptions {
  /** Give each device at least the KV floor instead of rejecting the plan; default false. */
  readonly kvFloor?: boolean;
}

/** Places models the reference FineServe way. */
export function planReference(costModel: CostModel, input: PlanInput, options: ReferencePlanOptions = {}): PlacementPlan {
  validatePlanInput(input);
  const devices = initDevices(input.devices);
  // The reference tracks free memory against the whole device, not a utilisation fraction.
  const refFree = new Map<DeviceState, number>(devices.map((d) => [d, d.spec.memoryBytes]));
  const nodes = byNode(devices);
  const gpusPerNode = Math.max(...nodes.map((n) => n.length));
  type Replica = { model: string; replica: number; entry: CostEntry; rate: number; required: number; slo: number; maxBatch: number; minBatch: number };
  const replicas: Replica[] = [];
  const unplaced: Unplaced[] = [];
  for (const spec of input.models) {
    const d = modelDemand(costModel, spec, devices[0]!.spec, referenceEstimator, {
      ...(input.sloScale !== undefined && { sloScale: input.sloScale }),
      maxTp: gpusPerNode,
      maxReplicas: devices.length,
      floorRateSplit: true,
    });
    const entry = costModel.entry(spec.family, spec.precision, d.tp, spec.id);
    // `rate // dp` floors only matter once a model is split (dp > 1); a whole rate passes as given.
    const rate = d.replicas > 1 ? Math.floor(spec.rate / d.replicas) : spec.rate;
    const minBatch = Number.isFinite(d.rateMinBatch) ? d.rateMinBatch : d.sloMaxBatch;
    const required = 1.3 * entry.weightBytes + minBatch * (PLAN_INPUT_TOKENS + PLAN_OUTPUT_TOKENS) * entry.kvBytesPerToken;
    for (let r = 0; r < d.replicas; r++) {
      replicas.push({ model: spec.id, replica: r, entry, rate, required, slo: d.sloMs, maxBatch: Math.min(d.sloMaxBatch, MAX_BATCH_CAP), minBatch });
    }
  }
  replicas.sort((a, b) => b.required - a.required);
  const placements: Placement[] = [];
  let total = 0;
  for (const r of replicas) {
    const t = r.entry.tp;
    let best: { group: DeviceState[]; score: number } | undefined;
    for (const node of nodes) {
      const candidates = node.filter((d) => refFree.get(d)! >= staticBytesPerDevice(r.entry));
      for (const group of combinations(candidates, t)) {
        let score = 0;
        for (const d of group) {
          const entries = [...d.residents.map((x) => x.entry), r.entry];
          const avgBlock = entries.length / entries.reduce((a, e) => a + e.tp / (e.shape.layers * blockGb(e)), 0);
          score += Math.floor((refFree.get(d)! - r.required / t) / 2 ** 30 / avgBlock) / 1e5;
        }
        if (best === undefined || score > best.score) best = { group, score };
      }
    }
    if (best === undefined) {
      unplaced.push({ model: r.model, constraint: 'memory', reason: `replica ${r.replica}: no ${t} device(s) of one node with ${(staticBytesPerDevice(r.entry) / 1e9).toFixed(1)} GB free` });
      continue;
    }
    for (const d of best.group) refFree.set(d, refFree.get(d)! - staticBytesPerDevice(r.entry));
    place(best.group, { model: r.model, entry: r.entry, tp: t, rate: r.rate, sloMs: r.slo, maxBatch: r.maxBatch, minBatch: r.minBatch });
    total += best.score;
    placements.push({
      model: r.model,
      replica: r.replica,
      devices: best.group.map((d) => d.spec.id),
      tp: t,
      rate: r.rate,
      maxBatch: r.maxBatch,
      minBatch: r.minBatch,
      // The reference's minimum reservation: one full prefill batch (2048 tokens) per engine.
      reserveBytes: Math.ceil((2048 * r.entry.kvBytesPerToken) / t),
      sloMs: r.slo,
    });
  }
  // The resource manager's KV: total memory − 1.8 × Σ weights / TP; engines whose device cannot
  // give them their minimum reservation fail to start.
  const floor = (d: DeviceState): number => (options.kvFloor === true ? DEVICE_KV_FLOOR_FRACTION * USABLE_MEMORY_FRACTION * d.spec.memoryBytes : 0);
  const kvOf = new Map(devices.map((d) => [d.spec.id, Math.floor(Math.max(floor(d), d.spec.memoryBytes - 1.8 * d.weightBytes))]));
  for (const d of devices) {
    const floors = d.residents.reduce((a, x) => a + kvFloorBytes(x.entry), 0);
    if (kvOf.get(d.spec.id)! >= floors) continue;
    for (const x of d.residents) {
      if (unplaced.some((u) => u.model === x.model)) continue;
      unplaced.push({ model: x.model, constraint: 'memory', reason: `${d.spec.id}: ${(kvOf.get(d.spec.id)! / 1e9).toFixed(1)} GB of KV after 1.8 x weights cannot hold the engines' 2048-token reservations (${(floors / 1e9).toFixed(1)} GB)` });
    }
  }
  // A replica that found no device leaves its model under-provisioned when another replica of it
  // was placed; only a model with no replica at all is unplaced.
  const placedModels = new Set(placements.map((p) => p.model));
  const short = unplaced.filter((u) => placedModels.has(u.model) && u.reason.startsWith('replica '));
  const missing = unplaced.filter((u) => !short.includes(u));
  const plan = finishPlan(options.kvFloor === true ? 'reference-floor' : 'reference', input.models, devices, placements, missing, total, 'per-layer-count', 1, short);
  return { ...plan, devices: plan.devices.map((d) => ({ ...d, kvBytes: kvOf.get(d.id)! })) };
}
