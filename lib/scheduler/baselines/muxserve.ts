/**
 * MuxServe-style placement (notes §8.3): replicas in decreasing compute need, each onto the device
 * group with the least compute load that has memory for it; KV in one unified pool of equal,
 * padded blocks. MuxServe's prefill/decode split under MPS is not modelled.
 * @module
 */
import type { CostModel } from '../cost-model.js';
import { byNode, combinations, finishPlan, initDevices, place, staticBytesPerDevice, validatePlanInput, type DeviceState } from '../placement-state.js';
import type { Placement, PlacementPlan, PlanInput } from '../types.js';
import { baselineReplicas } from './common.js';

/** Places replicas by compute load, unified KV blocks. */
export function planMuxServe(costModel: CostModel, input: PlanInput): PlacementPlan {
  validatePlanInput(input);
  const devices = initDevices(input.devices);
  const nodes = byNode(devices);
  const replicas = baselineReplicas(costModel, input).sort((a, b) => b.load - a.load);
  const placements: Placement[] = [];
  const unplaced: { model: string; reason: string }[] = [];
  for (const r of replicas) {
    const t = r.entry.tp;
    const need = staticBytesPerDevice(r.entry);
    let best: { group: DeviceState[]; load: number } | undefined;
    for (const node of nodes) {
      for (const group of combinations(node.filter((d) => d.free >= need), t)) {
        const load = Math.max(...group.map((d) => d.pressure));
        if (best === undefined || load < best.load) best = { group, load };
      }
    }
    if (best === undefined) {
      unplaced.push({ model: r.model, reason: `replica ${r.replica}: no ${t} device(s) with ${(need / 1e9).toFixed(1)} GB free` });
      continue;
    }
    for (const d of best.group) d.pressure += r.load;
    place(best.group, { model: r.model, entry: r.entry, tp: t, rate: r.rate, sloMs: r.sloMs, maxBatch: r.maxBatch, minBatch: r.minBatch });
    placements.push({ model: r.model, replica: r.replica, devices: best.group.map((d) => d.spec.id), tp: t, rate: r.rate, maxBatch: r.maxBatch, minBatch: r.minBatch, reserveBytes: 0, sloMs: r.sloMs });
  }
  const score = -Math.max(...devices.map((d) => d.pressure));
  return finishPlan('muxserve', input.models, devices, placements, unplaced, score, 'unified');
}
