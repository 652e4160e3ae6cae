/**
 * Prism's migration (notes §8.2: KVPR placement "with a migration threshold τ"): when the rates
 * move, the device with the highest KV pressure ratio (summed rate/SLO over its free KV memory)
 * is compared with the lowest; past a ratio of 1 + τ, one model of the most pressed device moves
 * to another device that keeps its KV floor: the (model, device) pair that leaves the lowest
 * highest KVPR over all devices, if that is below the current highest. Prism's paper gives no τ; 0.5 is our assumption. TP groups do not move
 * (a move is one engine's weights onto one device).
 * @module
 */
import type { CostModel } from '../cost-model.js';
import { diffPlans, type ReplicaMove } from '../drift.js';
import { finishPlan, initDevices, keepsKvFloor, place, type DeviceState } from '../placement-state.js';
import type { PlacementPlan, PlanInput } from '../types.js';
import { baselineReplicas, type BaselineReplica } from './common.js';

/** Default migration threshold τ. */
export const PRISM_TAU = 0.5;

/** What one migration check decided. */
export interface PrismMigration {
  /** Highest over lowest device KVPR under the observed rates, before any move. */
  readonly imbalance: number;
  readonly plan: PlacementPlan;
  readonly moves: readonly ReplicaMove[];
}

// Devices with the plan's placements applied (`moved` on its new device), pressures at the replicas' rates.
function replay(input: PlanInput, plan: PlacementPlan, byModel: ReadonlyMap<string, BaselineReplica>, moved?: { model: string; to: string }): DeviceState[] {
  const devices = initDevices(input.devices);
  const byId = new Map(devices.map((d) => [d.spec.id, d]));
  for (const p of plan.placements) {
    const r = byModel.get(p.model)!;
    const group = (moved?.model === p.model ? [moved.to] : p.devices).map((id) => byId.get(id)!);
    for (const d of group) d.pressure += r.rate / (r.sloMs / 1000) / p.tp;
    place(group, { model: p.model, entry: r.entry, tp: p.tp, rate: r.rate, sloMs: r.sloMs, maxBatch: p.maxBatch, minBatch: p.minBatch });
  }
  return devices;
}

const kvpr = (d: DeviceState): number => d.pressure / Math.max(d.free, 1);

/** One migration check of a Prism plan at the observed rates (req/s by model). */
export function prismMigration(costModel: CostModel, input: PlanInput, current: PlacementPlan, observed: Readonly<Record<string, number>>, tau = PRISM_TAU): PrismMigration {
  const models = input.models.map((m) => ({ ...m, rate: observed[m.id] ?? m.rate }));
  const byModel = new Map(baselineReplicas(costModel, { ...input, models }).map((r) => [r.model, r]));
  const devices = replay(input, current, byModel);
  const sorted = [...devices].sort((a, b) => kvpr(b) - kvpr(a));
  const hi = sorted[0]!;
  const lo = sorted.at(-1)!;
  const imbalance = kvpr(hi) / Math.max(kvpr(lo), 1e-12);
  if (!(imbalance > 1 + tau)) return { imbalance, plan: current, moves: [] };
  let best: { model: string; to: string; worst: number } | undefined;
  for (const p of current.placements) {
    if (p.tp !== 1 || p.devices[0] !== hi.spec.id) continue;
    for (const to of sorted.slice(1)) {
      // The destination must keep every resident's KV floor with the newcomer on it.
      const without = replay(input, { ...current, placements: current.placements.filter((x) => x.model !== p.model) }, byModel).find((d) => d.spec.id === to.spec.id)!;
      if (!keepsKvFloor(without, byModel.get(p.model)!.entry)) continue;
      const after = replay(input, current, byModel, { model: p.model, to: to.spec.id });
      const worst = Math.max(...after.map(kvpr));
      if (worst < kvpr(hi) && (best === undefined || worst < best.worst)) best = { model: p.model, to: to.spec.id, worst };
    }
  }
  if (best === undefined) return { imbalance, plan: current, moves: [] };
  const after = replay(input, current, byModel, best);
  const placements = current.placements.map((p) => ({ ...p, rate: byModel.get(p.model)!.rate, ...(p.model === best.model && { devices: [best.to] }) }));
  const plan = finishPlan('prism', models, after, placements, [], -Math.max(...after.map(kvpr)), 'paged', current.version + 1);
  return { imbalance, plan, moves: diffPlans(current, plan) };
}
