/**
 * One simulation of one system on one scenario, summarised (no per-request outcomes), so the
 * orchestrator can farm runs out to worker threads.
 * @module
 */
import { CostModel } from '../../lib/scheduler/cost-model.js';
import { prismMigration } from '../../lib/scheduler/baselines/prism-migration.js';
import { baseTp, referenceEstimator, sloMs } from '../../lib/scheduler/demand.js';
import { replanOnDrift } from '../../lib/scheduler/drift.js';
import type { ModelSpec, PlacementPlan, PlanInput } from '../../lib/scheduler/types.js';
import { simulate, type SimMigration, type SimReplan } from '../../lib/sim/simulator.js';
import { buildSystem, type SystemName } from '../../lib/sim/systems.js';
import type { Arrival } from '../../lib/sim/workload.js';
import { materialize, SHIFT_DETECT_MS, type Scenario } from './scenarios.js';

/** What a run reports. */
export interface RunSummary extends Scenario {
  readonly system: SystemName;
  /** False when the system's planner could not place every model: the run counts as rejected. */
  readonly feasible: boolean;
  readonly sloAttainment: number;
  readonly tokenThroughput: number;
  readonly arrivals: number;
  readonly finished: number;
  readonly dropped: number;
  readonly inFlight: number;
  readonly ttftP99Ms: number;
  readonly tpotP99Ms: number;
  readonly preemptions: number;
  readonly unplaced: number;
  /** Share of iterations timed by extrapolating the profiles. */
  readonly extrapolatedShare: number;
  readonly wallMs: number;
  /** rateShift: attainment of the requests that arrived before and after the shift. */
  readonly phaseAttainment?: readonly [number, number];
  /** rateShift online: replicas the re-placement started, with drain and ready times. */
  readonly migrations?: readonly SimMigration[];
}

/** Requests per second of each model over [from, to). */
function ratesIn(models: readonly ModelSpec[], arrivals: readonly Arrival[], from: number, to: number): Record<string, number> {
  const n: Record<string, number> = Object.fromEntries(models.map((m) => [m.id, 0]));
  for (const a of arrivals) if (a.arrivalMs >= from && a.arrivalMs < to) n[a.model] = (n[a.model] ?? 0) + 1;
  return Object.fromEntries(Object.entries(n).map(([k, v]) => [k, Math.max(0.01, v / ((to - from) / 1000))]));
}

/** The re-placement a system makes after a rate shift, from the rates seen since: ours or Prism's. */
function replacement(costModel: CostModel, system: SystemName, input: PlanInput, plan: PlacementPlan, observed: Record<string, number>): PlacementPlan {
  if (system === 'prism') return prismMigration(costModel, input, plan, observed).plan;
  if (system === 'fineserve') return replanOnDrift(costModel, input, plan, observed).plan;
  throw new Error(`rateShift online: no re-placement rule for ${system}`);
}

/** Mean prompt and output tokens of the workload, as an operator would configure them from its traffic. */
function meanLengths(arrivals: readonly Arrival[]): { input: number; output: number } {
  const n = Math.max(1, arrivals.length);
  return { input: arrivals.reduce((a, x) => a + x.promptTokens, 0) / n, output: arrivals.reduce((a, x) => a + x.outputTokens, 0) / n };
}

let cached: CostModel | undefined;

/** The model with its TTFT SLO as derived, and a TPOT SLO of `scale` × its batch-1 decode step on its base TP. */
function withTpotSlo(costModel: CostModel, spec: ModelSpec, sloScale: number, scale: number): ModelSpec {
  const entry = costModel.entry(spec.family, spec.precision, baseTp(costModel, spec), spec.id);
  return { ...spec, slo: { ttftMs: sloMs(costModel, spec, sloScale), tpotMs: scale * referenceEstimator(entry).decodeMs(1, 1) } };
}

/** Runs one (scenario, system). */
export function runOne(s: Scenario, system: SystemName): RunSummary {
  const t0 = performance.now();
  cached ??= CostModel.reference();
  const m = materialize(s);
  const { devices, arrivals } = m;
  const half = s.durationMs / 2;
  // A rate shift is planned for the first half's rates, as an operator would have configured them.
  const planned = s.rateShift === undefined ? m.models : m.models.map((x) => ({ ...x, rate: ratesIn(m.models, arrivals, 0, half)[x.id]! }));
  const models = s.tpotSloScale === undefined ? planned : planned.map((spec) => withTpotSlo(cached!, spec, s.sloScale, s.tpotSloScale!));
  const input = { models, devices, sloScale: s.sloScale, meanLengths: meanLengths(arrivals) };
  const sys = buildSystem(system, cached, input);
  let replan: SimReplan | undefined;
  if (s.rateShift === 'online' || s.rateShift === 'overlap') {
    const atMs = half + SHIFT_DETECT_MS;
    const next = replacement(cached, system, input, sys.plan, ratesIn(models, arrivals, half, atMs));
    if (next !== sys.plan) replan = { atMs, plan: next, ...(s.rateShift === 'overlap' && { overlap: true }) };
  }
  const r = simulate({ costModel: cached, models, devices, system: sys, arrivals, drainMs: 30_000, ...(s.mapCostMs !== undefined && { kvOptions: { mapCostMs: s.mapCostMs } }), ...(replan !== undefined && { replan }) });
  const phase = (early: boolean): number => {
    const o = r.outcomes.filter((x) => x.arrivalMs < half === early);
    return o.length === 0 ? 1 : o.filter((x) => x.attained).length / o.length;
  };
  return {
    ...s,
    system,
    feasible: sys.plan.feasible,
    sloAttainment: r.sloAttainment,
    tokenThroughput: r.tokenThroughput,
    arrivals: r.arrivals,
    finished: r.finished,
    dropped: r.dropped,
    inFlight: r.inFlight,
    ttftP99Ms: r.ttftP99Ms,
    tpotP99Ms: r.tpotP99Ms,
    preemptions: r.preemptions,
    unplaced: sys.plan.unplaced.length,
    extrapolatedShare: r.extrapolatedShare,
    wallMs: performance.now() - t0,
    ...(s.rateShift !== undefined && { phaseAttainment: [phase(true), phase(false)] as const }),
    ...((s.rateShift === 'online' || s.rateShift === 'overlap') && { migrations: r.migrations }),
  };
}
