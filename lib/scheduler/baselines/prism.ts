/**
 * Prism-style placement (notes §3.4, §8.2): one engine per model at the smallest TP that fits
 * (Prism places models, it does not replicate them); models in order of rate / (SLO × TP); each
 * goes to the devices with the lowest KV pressure ratio, (summed rate/SLO) / (free KV memory),
 * i.e. where the most KV memory per unit of deadline-weighted demand is left, among devices that
 * keep their KV floor. The scoring/update TP mismatch of the reference's copy is not reproduced:
 * Prism's own heuristic is the baseline here. Its migration threshold τ acts on re-placement only
 * (a static run places once).
 * @module
 */
import type { CostModel } from '../cost-model.js';
import { byNode, finishPlan, initDevices, keepsKvFloor, place, staticBytesPerDevice, validatePlanInput, type DeviceState } from '../placement-state.js';
import type { Placement, PlacementPlan, PlanInput, Unplaced } from '../types.js';
import { baselineReplicas, type BaselineReplica } from './common.js';

/** Places models by KV pressure ratio. */
export function planPrism(costModel: CostModel, input: PlanInput): PlacementPlan {
  validatePlanInput(input);
  let order = baselineReplicas(costModel, input).sort((a, b) => b.rate / (b.sloMs * b.entry.tp) - a.rate / (a.sloMs * a.entry.tp));
  // Every model placed: a model the greedy pass left out moves to the front and the pass reruns
  // (at most once per model), so memory-hungry TP groups claim devices before small models scatter.
  for (let tries = 0; ; tries++) {
    const attempt = placeByKvpr(input, order);
    if (attempt.unplaced.length === 0 || tries >= order.length) return attempt.plan;
    const missing = new Set(attempt.unplaced.map((u) => u.model));
    order = [...order.filter((r) => missing.has(r.model)), ...order.filter((r) => !missing.has(r.model))];
  }
}

function placeByKvpr(input: PlanInput, replicas: readonly BaselineReplica[]): { plan: PlacementPlan; unplaced: Unplaced[] } {
  const devices = initDevices(input.devices);
  const nodes = byNode(devices);
  const placements: Placement[] = [];
  const unplaced: Unplaced[] = [];
  for (const r of replicas) {
    const t = r.entry.tp;
    const need = staticBytesPerDevice(r.entry);
    const demand = r.rate / (r.sloMs / 1000) / t;
    let best: { group: DeviceState[]; kvpr: number } | undefined;
    for (const node of nodes) {
      // The t devices of the node with the lowest KVPR after adding this model.
      const scored = node
        .filter((d) => keepsKvFloor(d, r.entry))
        .map((d) => ({ d, kvpr: (d.pressure + demand) / (d.free - need) }))
        .sort((a, b) => a.kvpr - b.kvpr);
      if (scored.length < t) continue;
      const group = scored.slice(0, t);
      const kvpr = group.reduce((a, g) => a + g.kvpr, 0);
      if (best === undefined || kvpr < best.kvpr) best = { group: group.map((g) => g.d), kvpr };
    }
    if (best === undefined) {
      unplaced.push({ model: r.model, constraint: 'memory', reason: `no ${t} device(s) with ${(need / 1e9).toFixed(1)} GB free above the KV floor` });
      continue;
    }
    for (const d of best.group) d.pressure += demand;
    place(best.group, { model: r.model, entry: r.entry, tp: t, rate: r.rate, sloMs: r.sloMs, maxBatch: r.maxBatch, minBatch: r.minBatch });
    placements.push({ model: r.model, replica: r.replica, devices: best.group.map((d) => d.spec.id), tp: t, rate: r.rate, maxBatch: r.maxBatch, minBatch: r.minBatch, reserveBytes: 0, sloMs: r.sloMs });
  }
  const score = -devices.reduce((a, d) => Math.max(a, d.pressure / Math.max(d.free, 1)), 0);
  return { plan: finishPlan('prism', input.models, devices, placements, unplaced, score, 'paged'), unplaced };
}
