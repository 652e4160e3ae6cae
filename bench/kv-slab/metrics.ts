/**
 * What one replay measures: request counters, sums over the measurement window, and the result
 * record the report is made from.
 * @module
 */
import type { CompactionLog } from './compaction.js';
import type { RunSpec } from './policies.js';

/** Sums over the measurement window. */
export class Window {
  steps = 0;
  liveTokens = 0;
  liveBytes = 0;
  internal = 0;
  external = 0;
  tail = 0;
  free = 0;
  unusable = 0;
  saturatedSteps = 0;
  saturatedUtil = 0;
  saturatedLiveTokens = 0;
  admittedPromptTokens = 0;
  readonly modelLiveTokens: number[];
  readonly modelHeldBytes: number[];
  readonly modelExternalBytes: number[];
  /** External bytes held by models with nobody waiting: stranded for the models that are. */
  externalIdle = 0;

  constructor(models: number) {
    this.modelLiveTokens = new Array<number>(models).fill(0);
    this.modelHeldBytes = new Array<number>(models).fill(0);
    this.modelExternalBytes = new Array<number>(models).fill(0);
  }
}

export interface Counters {
  arrived: number;
  admitted: number;
  completed: number;
  rejected: number;
  preemptions: number;
  preemptedRequests: number;
  recomputeTokens: number;
  completedInputTokens: number;
  completedOutputTokens: number;
  unfinished: number;
  rolledBackAdmissions: number;
  stalledDecodes: number;
}

export function newCounters(): Counters {
  return {
    arrived: 0, admitted: 0, completed: 0, rejected: 0, preemptions: 0, preemptedRequests: 0, recomputeTokens: 0,
    completedInputTokens: 0, completedOutputTokens: 0, unfinished: 0, rolledBackAdmissions: 0, stalledDecodes: 0,
  };
}

export interface RunResult {
  readonly spec: RunSpec;
  readonly models: readonly { name: string; tokensPerBlock: number; blockBytes: number; tokenBytes: number; partitionBytes?: number }[];
  readonly counters: Counters;
  readonly window: Window;
  readonly peakUtil: number;
  readonly poolPeakLiveTokenBytes: number;
  readonly phaseLiveTokens: number[];
  readonly phaseUtil: number[];
  readonly stepsRun: number;
  /** Steps [warmup, end of arrivals): the measurement window, the same for every policy. */
  readonly windowSteps: { readonly from: number; readonly to: number };
  readonly nativeNs: Float64Array;
  readonly nativeCalls: number;
  readonly blockOps: number;
  readonly mapCostNs: number;
  readonly mapCalls: number;
  /** Runs with reclaim by compaction only; per step arrays cover `stepsRun` steps. */
  readonly compaction?: CompactionLog;
  readonly wallMs: number;
}
