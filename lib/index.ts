/**
 * fineserve: serve several LLMs of different precisions side by side on shared GPUs or the CPU.
 * @module
 */
export { devices } from './devices.js';
export type { AddonInfo, CpuDevice, CudaDevice, CudaStatus, DeviceReport, SimdLevel } from './devices.js';
export { EngineError, ExecutorError, FineserveError, KvError, ModelError, NativeLoadError } from './errors.js';
export type { AddonVariant, EngineErrorCode, ExecutorErrorCode, KvErrorCode, ModelErrorCode, NativeLoadAttempt } from './errors.js';
export { Model } from './model.js';
export type { Calibration, LlamaConfig, LoadModelOptions, PerplexityOptions, PerplexityResult } from './model.js';
export { autoKvFormat, parsePrecision, PRECISION_NAMES, precisionName } from './precision.js';
export type { ActivationFormat, BasePrecisionName, KvSuffix, PrecisionName, PrecisionSpec, WeightFormat } from './precision.js';
export { quantizeGguf } from './quantize.js';
export type { GgufQuantType, QuantizedGguf, QuantizeGgufOptions } from './quantize.js';
export { StreamDecoder, Tokenizer } from './tokenizer.js';
export type { ChatMessage, ChatTemplateOptions, GgufMetadataSource, TokenizerDecodeOptions, TokenizerEncodeOptions, TokenizerModelSource } from './tokenizer.js';
export { createThreadPool } from './thread-pool.js';
export type { NativeThreadPool } from './thread-pool.js';
export { ModelRunner } from './runner.js';
export type { GenerateOutput, GenerateRequest, RunnerOptions, SamplingOptions } from './runner.js';
export { generateModel, MODEL_SHAPES } from './generate.js';
export type { GenerateErrorCode, GeneratedModel, GenerateModelOptions, ModelShape } from './generate.js';
export { KvPool, kvTokenBytes } from './kv-pool.js';
export type {
  KvAllocResult,
  KvCompaction,
  KvFormat,
  KvGeometry,
  KvGeometryStats,
  KvLayout,
  KvModelOptions,
  KvModelStats,
  KvPolicy,
  KvPoolOptions,
  KvPoolStats,
  KvStep,
} from './kv-pool.js';
export { PlanError } from './scheduler/errors.js';
export type { PlanErrorCode } from './scheduler/errors.js';
export { CostModel } from './scheduler/cost-model.js';
export type { CostEntry, CostModelOptions } from './scheduler/cost-model.js';
export { iterationMs, OnlineLatencyModel, ProfileLatencyModel } from './scheduler/latency-model.js';
export type { IterationSample, IterationShape, LatencyModel, OnlineLatencyOptions } from './scheduler/latency-model.js';
export { formatProfileCsv, loadReferenceProfiles, parseProfileCsv, PROFILE_COLUMNS } from './scheduler/profiles.js';
export type { ProfileRow, ReferenceProfileSet } from './scheduler/profiles.js';
export { planFineServe } from './scheduler/global.js';
export type { FineServePlanOptions } from './scheduler/global.js';
export { planReference } from './scheduler/baselines/reference.js';
export { planPrism } from './scheduler/baselines/prism.js';
export { planMuxServe } from './scheduler/baselines/muxserve.js';
export { planStaticSplit } from './scheduler/baselines/static-split.js';
export { diffPlans, replanOnDrift } from './scheduler/drift.js';
export type { DriftDecision, DriftOptions, ReplicaMove } from './scheduler/drift.js';
export type { DevicePlan, DeviceSpec, ModelDemand, ModelSpec, Placement, PlacementPlan, PlanInput, Slo } from './scheduler/types.js';
export { fcfs, fineserveLocal, fineserveLocalWith, LOCAL_POLICIES, prismLocal, saab } from './scheduler/local/index.js';
export type {
  FineServeLocalOptions,
  IterationDecision,
  LocalPolicy,
  LocalPolicyName,
  ModelSnapshot,
  PrefillChunk,
  RunningSequence,
  WaitingRequest,
} from './scheduler/local/index.js';
export { simulate } from './sim/simulator.js';
export type { RequestOutcome, SimConfig, SimResult, SimSystem } from './sim/simulator.js';
export { generateWorkload, modelRates } from './sim/workload.js';
export type { Arrival, LengthFit, RatePhase, WorkloadSpec } from './sim/workload.js';
export { buildSystem, SYSTEM_NAMES } from './sim/systems.js';
export type { SystemName } from './sim/systems.js';
export { Engine } from './engine.js';
export type { DeviceStats, EngineLoadOptions, EngineOptions, EnginePolicy, EngineStats, LoadedModelInfo, ModelStats, ServingSlo } from './engine.js';
export type { ModelCounters, Percentiles } from './engine/model-stats.js';
export { GenerationRun } from './request.js';
export type { FinishReason, GenerateOptions, GenerationChunk, GenerationResult, PromptInput, RequestTimings } from './request.js';
export { MeasuredLatencyModel, CoLocatedLatency } from './scheduler/measured-latency.js';
export type { MeasuredLatencyOptions } from './scheduler/measured-latency.js';
