/**
 * MuxServe-style placement (notes §8.3): one engine per model on a mesh sized by its popularity
 * (the smallest TP whose throughput carries its rate), models in decreasing compute need, each
 * onto the device group with the least compute load that keeps its KV floor; KV in one unified
 * pool of equal, padded blocks. Its local side is FCFS, with each model's prefill and decode run
 * as two concurrent jobs (the simulator's `splitPrefillDecode`, as MuxServe's MPS processes do).
 * Its adaptive batch scheduling (ADBS: per-model KV token-block quotas adapted to use every 8 s,
 * whole-prompt prefill batches, prefill jobs first on the SMs) runs in the simulator
 * (lib/sim/adbs.ts, the system's `adaptiveBatching`).
 * @module
 */
import type { CostModel } from '../cost-model.js';
import { byNode, combinations, finishPlan, initDevices, keepsKvFloor, place, staticBytesPerDevice, validatePlanInput, type DeviceState } from '../placement-state.js';
import type { Placement, PlacementPlan, PlanInput, Unplaced } from '../types.js';
import { baselineReplicas } from './common.js';

/** Places replicas by compute load, unified KV blocks. */
export function planMuxServe(costModel: CostModel, input: PlanInput): PlacementPlan {
  validatePlanInput(input);
  const devices = initDevices(input.devices);
  const nodes = byNode(devices);
  const replicas = baselineReplicas(costModel, input, 'compute').sort((a, b) => b.load - a.load);
  const placements: Placement[] = [];
  const unplaced: Unplaced[] = [];
  for (const r of replicas) {
    const t = r.entry.tp;
    const need = staticBytesPerDevice(r.entry);
    let best: { group: DeviceState[]; load: number } | undefined;
    for (const node of nodes) {
      for (const group of combinations(node.filter((d) => keepsKvFloor(d, r.entry)), t)) {
        const load = Math.max(...group.map((d) => d.pressure));
        if (best === undefined || load < best.load) best = { group, load };
      }
    }
    if (best === undefined) {
      unplaced.push({ model: r.model, constraint: 'memory', reason: `no ${t} device(s) with ${(need / 1e9).toFixed(1)} GB free above the KV floor` });
      continue;
    }
    for (const d of best.group) d.pressure += r.load;
    place(best.group, { model: r.model, entry: r.entry, tp: t, rate: r.rate, sloMs: r.sloMs, maxBatch: r.maxBatch, minBatch: r.minBatch });
    placements.push({ model: r.model, replica: r.replica, devices: best.group.map((d) => d.spec.id), tp: t, rate: r.rate, maxBatch: r.maxBatch, minBatch: r.minBatch, reserveBytes: 0, sloMs: r.sloMs });
  }
  const score = -Math.max(...devices.map((d) => d.pressure));
  return finishPlan('muxserve', input.models, devices, placements, unplaced, score, 'unified');
}
