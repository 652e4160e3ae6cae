/**
 * `fineserve/sim`: the paper-reproduction tooling, apart from what a serving user needs. The global
 * scheduler's planners (FineServe's and the baselines'), their cost and latency models and the
 * reference profiles, the local policies as pure functions, the discrete-event simulator with its
 * workloads and systems, and the tools that compare policies on the real engine.
 * @module
 */
export { PlanError } from '../scheduler/errors.js';
export type { PlanErrorCode } from '../scheduler/errors.js';
export { CostModel } from '../scheduler/cost-model.js';
export type { CostEntry, CostModelOptions } from '../scheduler/cost-model.js';
export { iterationMs, OnlineLatencyModel, ProfileLatencyModel } from '../scheduler/latency-model.js';
export type { IterationSample, IterationShape, LatencyModel, OnlineLatencyOptions } from '../scheduler/latency-model.js';
export { formatProfileCsv, loadReferenceProfiles, parseProfileCsv, PROFILE_COLUMNS } from '../scheduler/profiles.js';
export type { ProfileRow, ReferenceProfileSet } from '../scheduler/profiles.js';
export { planFineServe } from '../scheduler/global.js';
export type { FineServePlanOptions } from '../scheduler/global.js';
export { planReference } from '../scheduler/baselines/reference.js';
export { planPrism } from '../scheduler/baselines/prism.js';
export { planMuxServe } from '../scheduler/baselines/muxserve.js';
export { planStaticSplit } from '../scheduler/baselines/static-split.js';
export { diffPlans, replanOnDrift } from '../scheduler/drift.js';
export type { DriftDecision, DriftOptions, ReplicaMove } from '../scheduler/drift.js';
export type { DevicePlan, DeviceSpec, ModelDemand, ModelSpec, Placement, PlacementPlan, PlanInput, Slo } from '../scheduler/types.js';
export { fcfs, fineserveLocal, fineserveLocalWith, LOCAL_POLICIES, prismLocal, saab } from '../scheduler/local/index.js';
export type {
  FineServeLocalOptions,
  IterationDecision,
  LocalPolicy,
  LocalPolicyName,
  ModelSnapshot,
  PrefillChunk,
  RunningSequence,
  WaitingRequest,
} from '../scheduler/local/index.js';
export { simulate } from './simulator.js';
export type { RequestOutcome, SimConfig, SimResult, SimSystem } from './simulator.js';
export { generateWorkload, modelRates } from './workload.js';
export type { Arrival, LengthFit, RatePhase, WorkloadSpec } from './workload.js';
export { buildSystem, SYSTEM_NAMES } from './systems.js';
export type { SystemName } from './systems.js';
export { MeasuredLatencyModel } from '../scheduler/measured-latency.js';
export type { MeasuredLatencyOptions } from '../scheduler/measured-latency.js';

export { calibrate, CPU_INPUT, CPU_OUTPUT, promptFor, runPolicy, workload } from './policy-comparison.js';
export type { Calibration as PolicyCalibration, ComparisonSetup, PolicyRun } from './policy-comparison.js';
export { replayWorkload } from './workload-replay.js';
export type { ReplayModelReport, ReplayOptions, ReplayReport } from './workload-replay.js';
