/**
 * Static partitioning, as the reference's `spart` baseline runs it: one vanilla vLLM engine per
 * model at the smallest TP that fits, dealt round-robin over devices (the first group from the
 * dealer's position that keeps its KV floor), each engine a fixed `gpu_memory_utilization` share:
 * its placement memory (1.3 × weights + KV of its rate-limited batch, the reference's estimate)
 * over the device's total, normalised so a device's shares sum to at most 0.9. FCFS locally.
 * @module
 */
import type { CostModel } from '../cost-model.js';
import { finishPlan, initDevices, keepsKvFloor, kvFloorBytes, place, staticBytesPerDevice, USABLE_MEMORY_FRACTION, validatePlanInput } from '../placement-state.js';
import type { Placement, PlacementPlan, PlanInput, Unplaced } from '../types.js';
import { baselineReplicas } from './common.js';

/** Places one engine per model round-robin with static `spart` KV partitions. */
export function planStaticSplit(costModel: CostModel, input: PlanInput): PlacementPlan {
  validatePlanInput(input);
  const devices = initDevices(input.devices);
  const replicas = baselineReplicas(costModel, input);
  const unplaced: Unplaced[] = [];
  const chosen: { r: (typeof replicas)[number]; group: typeof devices }[] = [];
  let cursor = 0;
  for (const r of replicas) {
    const t = r.entry.tp;
    let group: typeof devices | undefined;
    for (let k = 0; k < devices.length && group === undefined; k++) {
      const start = (cursor + k) % devices.length;
      const g = devices.slice(start, start + t);
      if (g.length === t && g.every((d) => d.node === g[0]!.node && keepsKvFloor(d, r.entry))) {
        group = g;
        cursor = (start + t) % devices.length;
      }
    }
    if (group === undefined) {
      unplaced.push({ model: r.model, constraint: 'memory', reason: `no ${t} consecutive device(s) with ${(staticBytesPerDevice(r.entry) / 1e9).toFixed(1)} GB free above the KV floor` });
      continue;
    }
    place(group, { model: r.model, entry: r.entry, tp: t, rate: r.rate, sloMs: r.sloMs, maxBatch: r.maxBatch, minBatch: r.minBatch });
    chosen.push({ r, group });
  }
  const required = (r: (typeof replicas)[number]): number => r.requiredBytes / r.entry.tp;
  const placements: Placement[] = chosen.map(({ r, group }) => {
    // The replica's share of each device, normalised to 0.9 of it; its KV partition is what the
    // share leaves after its weights and activations (never below its floor), smallest over the group.
    const kv = Math.min(
      ...group.map((d) => {
        const onIt = chosen.filter((c) => c.group.includes(d));
        const total = onIt.reduce((a, c) => a + required(c.r), 0);
        const share = (required(r) / total) * d.spec.memoryBytes * USABLE_MEMORY_FRACTION;
        return Math.max(kvFloorBytes(r.entry), share - staticBytesPerDevice(r.entry));
      }),
    );
    return {
      model: r.model,
      replica: r.replica,
      devices: group.map((d) => d.spec.id),
      tp: r.entry.tp,
      rate: r.rate,
      maxBatch: r.maxBatch,
      minBatch: r.minBatch,
      reserveBytes: Math.floor(kv),
      sloMs: r.sloMs,
    };
  });
  return finishPlan('static', input.models, devices, placements, unplaced, 0, 'static-per-model');
}
