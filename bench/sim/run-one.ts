/**
 * One simulation of one system on one scenario, summarised (no per-request outcomes), so the
 * orchestrator can farm runs out to worker threads.
 * @module
 */
import { CostModel } from '../../lib/scheduler/cost-model.js';
import { baseTp, referenceEstimator, sloMs } from '../../lib/scheduler/demand.js';
import type { ModelSpec } from '../../lib/scheduler/types.js';
import { simulate } from '../../lib/sim/simulator.js';
import { buildSystem, type SystemName } from '../../lib/sim/systems.js';
import { materialize, type Scenario } from './scenarios.js';

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
  const models = s.tpotSloScale === undefined ? m.models : m.models.map((spec) => withTpotSlo(cached!, spec, s.sloScale, s.tpotSloScale!));
  const sys = buildSystem(system, cached, { models, devices, sloScale: s.sloScale });
  const r = simulate({ costModel: cached, models, devices, system: sys, arrivals, drainMs: 30_000, ...(s.mapCostMs !== undefined && { kvOptions: { mapCostMs: s.mapCostMs } }) });
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
  };
}
