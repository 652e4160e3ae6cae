/**
 * Static even split: replicas dealt round-robin over devices (first device with room from the
 * dealer's position), each device's KV memory split evenly between its replicas, FCFS locally.
 * This is one vLLM engine per model with a fixed `gpu_memory_utilization` share.
 * @module
 */
import type { CostModel } from '../cost-model.js';
import { finishPlan, initDevices, place, staticBytesPerDevice, USABLE_MEMORY_FRACTION, validatePlanInput } from '../placement-state.js';
import type { Placement, PlacementPlan, PlanInput } from '../types.js';
import { baselineReplicas } from './common.js';

/** Places replicas round-robin with static, equal KV partitions. */
export function planStaticSplit(costModel: CostModel, input: PlanInput): PlacementPlan {
  validatePlanInput(input);
  const devices = initDevices(input.devices);
  const replicas = baselineReplicas(costModel, input);
  const unplaced: { model: string; reason: string }[] = [];
  const chosen: { r: (typeof replicas)[number]; group: typeof devices }[] = [];
  let cursor = 0;
  for (const r of replicas) {
    const t = r.entry.tp;
    const need = staticBytesPerDevice(r.entry);
    let group: typeof devices | undefined;
    for (let k = 0; k < devices.length && group === undefined; k++) {
      const start = (cursor + k) % devices.length;
      const g = devices.slice(start, start + t);
      if (g.length === t && g.every((d) => d.node === g[0]!.node && d.free >= need)) {
        group = g;
        cursor = (start + t) % devices.length;
      }
    }
    if (group === undefined) {
      unplaced.push({ model: r.model, reason: `replica ${r.replica}: no ${t} consecutive device(s) with ${(need / 1e9).toFixed(1)} GB free` });
      continue;
    }
    place(group, { model: r.model, entry: r.entry, tp: t, rate: r.rate, sloMs: r.sloMs, maxBatch: r.maxBatch, minBatch: r.minBatch });
    chosen.push({ r, group });
  }
  const placements: Placement[] = chosen.map(({ r, group }) => {
    // The even share of the smallest KV region in the group bounds the partition.
    const share = Math.min(
      ...group.map((d) => (d.spec.memoryBytes * USABLE_MEMORY_FRACTION - d.weightBytes - d.activationBytes) / d.residents.length),
    );
    return {
      model: r.model,
      replica: r.replica,
      devices: group.map((d) => d.spec.id),
      tp: r.entry.tp,
      rate: r.rate,
      maxBatch: r.maxBatch,
      minBatch: r.minBatch,
      reserveBytes: Math.max(0, Math.floor(share)),
      sloMs: r.sloMs,
    };
  });
  return finishPlan('static', input.models, devices, placements, unplaced, 0, 'static-per-model');
}
