/**
 * Re-planning when observed rates drift from the rates a plan was made for. The reference places
 * once, offline; when popularity shifts its pools and placements stay sized for the old mix.
 * @module
 */
import type { CostModel } from './cost-model.js';
import { planFineServe, type FineServePlanOptions } from './global.js';
import type { PlacementPlan, PlanInput } from './types.js';

/** Options of {@link replanOnDrift}. */
export interface DriftOptions extends FineServePlanOptions {
  /** Relative change of a model's rate that triggers a re-plan; default 0.3 (30 %). */
  readonly threshold?: number;
  /** Rates below this (req/s) are noise, compared in absolute terms; default 0.2. */
  readonly minRate?: number;
}

/** A replica that changes devices between two plans. */
export interface ReplicaMove {
  readonly model: string;
  readonly replica: number;
  /** Empty when the replica is new. */
  readonly from: readonly string[];
  /** Empty when the replica is gone. */
  readonly to: readonly string[];
}

/** What {@link replanOnDrift} decided. */
export interface DriftDecision {
  /** Models whose observed rate crossed the threshold, with the relative change. */
  readonly drifted: readonly { readonly model: string; readonly planned: number; readonly observed: number; readonly change: number }[];
  /** The new plan (version + 1), or the old one when nothing drifted. */
  readonly plan: PlacementPlan;
  readonly moves: readonly ReplicaMove[];
}

/** Relative rate change, with small rates compared against `minRate` so noise does not re-plan. */
export function rateChange(planned: number, observed: number, minRate = 0.2): number {
  return Math.abs(observed - planned) / Math.max(planned, minRate);
}

/**
 * Re-plans with the observed rates if any model's rate moved more than `threshold`, keeping
 * replicas in place unless moving gains more than the stickiness margin, and says which move.
 */
export function replanOnDrift(costModel: CostModel, input: PlanInput, current: PlacementPlan, observed: Readonly<Record<string, number>>, options: DriftOptions = {}): DriftDecision {
  const threshold = options.threshold ?? 0.3;
  const drifted = input.models
    .map((m) => {
      const planned = current.rates[m.id] ?? m.rate;
      const obs = observed[m.id] ?? planned;
      return { model: m.id, planned, observed: obs, change: rateChange(planned, obs, options.minRate) };
    })
    .filter((d) => d.change > threshold);
  if (drifted.length === 0) return { drifted, plan: current, moves: [] };
  const models = input.models.map((m) => ({ ...m, rate: observed[m.id] ?? m.rate }));
  const plan = planFineServe(costModel, { ...input, models }, { ...options, previous: current });
  return { drifted, plan, moves: diffPlans(current, plan) };
}

/** Replicas whose device group differs between two plans. */
export function diffPlans(before: PlacementPlan, after: PlacementPlan): ReplicaMove[] {
  const key = (p: { model: string; replica: number }): string => `${p.model}#${p.replica}`;
  const old = new Map(before.placements.map((p) => [key(p), p]));
  const moves: ReplicaMove[] = [];
  for (const p of after.placements) {
    const o = old.get(key(p));
    old.delete(key(p));
    if (o === undefined || o.devices.join(',') !== p.devices.join(',')) moves.push({ model: p.model, replica: p.replica, from: o?.devices ?? [], to: p.devices });
  }
  for (const o of old.values()) moves.push({ model: o.model, replica: o.replica, from: o.devices, to: [] });
  return moves;
}
