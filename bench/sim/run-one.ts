/**
 * One simulation of one system on one scenario, summarised (no per-request outcomes), so the
 * orchestrator can farm runs out to worker threads.
 * @module
 */
import { CostModel } from '../../lib/scheduler/cost-model.js';
import { simulate } from '../../lib/sim/simulator.js';
import { buildSystem, type SystemName } from '../../lib/sim/systems.js';
import { materialize, type Scenario } from './scenarios.js';

/** What a run reports. */
export interface RunSummary extends Scenario {
  readonly system: SystemName;
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
  readonly wallMs: number;
}

let cached: CostModel | undefined;

/** Runs one (scenario, system). */
export function runOne(s: Scenario, system: SystemName): RunSummary {
  const t0 = performance.now();
  cached ??= CostModel.reference();
  const { models, devices, arrivals } = materialize(s);
  const sys = buildSystem(system, cached, { models, devices, sloScale: s.sloScale });
  const r = simulate({ costModel: cached, models, devices, system: sys, arrivals, drainMs: 30_000 });
  return {
    ...s,
    system,
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
    wallMs: performance.now() - t0,
  };
}
