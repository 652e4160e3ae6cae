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
export { parsePrecision, PRECISION_NAMES, precisionName, servedPrecisionName } from './precision.js';
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
export { Engine } from './engine.js';
export type { DeviceLoad, DeviceOptions, DeviceStats, EngineLoadOptions, EngineOptions, EnginePlacement, EnginePolicy, EngineStats, LoadedModelInfo, ModelStats, PlacementEvent, PlacementMove, ReplanResult, ReplicaDecision, ReplicaStats, ServingSlo } from './engine.js';
export type { ArrivalRate } from './engine/rate-meter.js';
export type { ModelCounters, Percentiles } from './engine/model-stats.js';
export { GenerationRun } from './request.js';
export type { FinishReason, GenerateOptions, GenerationChunk, GenerationResult, PromptInput, RequestTimings } from './request.js';
