/**
 * The whole surface of the native addon (cpp/addon), declared in one place as node-llama-cpp's
 * AddonTypes.ts does: every class, function and object shape the binary exports. The facades
 * (lib/model.ts, lib/kv-pool.ts, lib/engine/executor.ts, ...) build on these; this file imports
 * only plain data types, so no facade is reached back through it.
 * @module
 */
import type { GeneratedModel, LlamaConfig, PerplexityResult, QuantizedGguf, SamplingOptions } from '../data-types.js';
import type { KvGeometry, KvLayout, KvModelOptions, KvPoolOptions, KvPoolStats } from '../kv-types.js';

/** A native job: it settles `promise`, and stops at its next progress report after `cancel()`. */
export interface NativeJob<T> {
  promise: Promise<T>;
  cancel(): void;
}

/** How the loaded binary was built, as the addon itself reports it. */
export interface NativeBuildInfo {
  readonly simdCompiled: readonly string[];
  readonly cuda: boolean;
  readonly napiVersion: number;
  readonly compiler: string;
}

/** The raw device report the addon resolves with; lib/devices.ts gives it its public shape. */
export interface RawDeviceReport {
  readonly cpu: {
    readonly model: string;
    readonly logicalCores: number;
    readonly physicalCores: number;
    readonly memoryBytes: number;
    readonly simdSupported: readonly string[];
    readonly simd: string;
    readonly simdNote?: string;
  };
  readonly cuda: {
    readonly compiled: boolean;
    readonly available: boolean;
    readonly reason?: string;
    readonly runtimeVersion: number;
    readonly driverVersion: number;
    readonly devices: readonly {
      readonly index: number;
      readonly name: string;
      readonly memoryBytes: number;
      readonly smCount: number;
      readonly computeCapabilityMajor: number;
      readonly computeCapabilityMinor: number;
      readonly pciBusId: string;
    }[];
  };
}

/** The functions the addon exports. Grows with each native feature. */
export interface NativeBinding {
  readonly buildInfo: NativeBuildInfo;
  devices(): Promise<RawDeviceReport>;
  readonly KvPool: NativeKvPoolConstructor;
  readonly generateModel: NativeGenerateModel;
  readonly Model: new () => NativeModel;
  readonly loadModel: NativeLoadModel;
  readonly ThreadPool: NativeThreadPoolConstructor;
  readonly Executor: NativeExecutorConstructor;
  readonly kvGeometryFor: NativeKvGeometryFor;
  readonly perplexity: NativePerplexity;
  readonly quantizeGguf: NativeQuantizeGguf;
  /** Bytes this thread's models and host KV pools report to V8 now (until their last owner lets go). */
  externalBytes(): number;
}

interface NativeAlloc {
  ok: boolean;
  available: number;
  blocks?: Uint32Array;
}

interface NativeStep {
  ids: Uint32Array;
  starts: Uint32Array;
  ok: Uint8Array;
  available: Float64Array;
}

/** The addon's KvPool class (cpp/addon/kv_pool.cc). */
export interface NativeKvPool {
  addModel(options: KvModelOptions): number;
  removeModel(model: number): void;
  alloc(model: number, count: number): NativeAlloc;
  free(model: number, blocks: Uint32Array): void;
  setLiveTokens(model: number, tokens: number): void;
  availableBlocks(model: number): number;
  step(
    freeModels: Uint32Array,
    freeCounts: Uint32Array,
    freeIds: Uint32Array,
    allocModels: Uint32Array,
    allocCounts: Uint32Array,
    liveModels: Uint32Array,
    liveTokens: Float64Array,
  ): NativeStep;
  layout(model: number): KvLayout;
  blockOffset(model: number, block: number): number;
  compact(model: number, maxSlabs: number): { released: number; moves: Uint32Array };
  stats(): Omit<KvPoolStats, 'byGeometry'>;
  /** Drops this object's share of the pool memory (executors keep theirs); idempotent. */
  dispose(): void;
  /** poolBytes for a host-memory kv-slab, else 0; 0 after dispose. */
  readonly nativeBytes: number;
}

export type NativeKvPoolConstructor = new (options: KvPoolOptions) => NativeKvPool;

/** The quantization request the addon's loadModel takes. */
export interface NativeQuantizeSpec {
  weights: string;
  group: number;
  kv: string;
  calibration: Int32Array[];
  smoothK: boolean;
}

/** The addon's Model object (cpp/addon/model.cc). */
export interface NativeModel {
  info(): {
    config: LlamaConfig;
    source: string;
    format: 'gguf' | 'safetensors';
    weightBytes: number;
    metadataKeys: string[];
    weightFormats?: Record<string, number>;
  };
  metadata(key: string): string | undefined;
  /** Drops this object's share of the weights (executors keep theirs); idempotent. */
  dispose(): void;
  /** Bytes of weights this object reports to V8 (mapped file pages included; 0 after dispose). */
  readonly nativeBytes: number;
}

/** The addon's loadModel. */
export type NativeLoadModel = (
  path: string,
  options: boolean | { checkFinite: boolean; quantize?: NativeQuantizeSpec },
  onProgress?: (fraction: number) => void,
) => NativeJob<NativeModel>;

/** The addon's perplexity (cpp/addon/perplexity.cc). */
export type NativePerplexity = (
  model: NativeModel,
  tokens: Int32Array,
  options: { kvFormat: string; threads: number; chunk: number },
  onProgress?: (fraction: number) => void,
) => NativeJob<PerplexityResult>;

interface NativeStepResult {
  tokens: Int32Array;
  logprobs: Float32Array;
  topK: number;
  topTokens: Int32Array;
  topLogprobs: Float32Array;
  logits?: Float32Array;
}

/** The addon's Executor (cpp/addon/executor.cc). */
export interface NativeExecutor {
  /** `output`: tokens it generated on another executor; its sampler resumes after them. */
  addSequence(id: number, prompt: Int32Array, sampling: SamplingOptions, output?: Int32Array): void;
  removeSequence(id: number): void;
  step(
    seqIds: Uint32Array,
    tokens: Int32Array,
    nTokens: Uint32Array,
    positions: Uint32Array,
    blocks: Uint32Array,
    nBlocks: Uint32Array,
    sample: Uint8Array,
    returnLogits: boolean,
  ): Promise<NativeStepResult>;
  /** Drops its shares of the model, pool and threads (deferred to the end of a running step). */
  dispose(): void;
}

/** The addon's kvGeometryFor: the KV block geometry (with scale bytes) a model needs in a format. */
export type NativeKvGeometryFor = (model: NativeModel, kvFormat: string, tokensPerBlock: number) => Required<KvGeometry>;

export type NativeExecutorConstructor = new (
  model: NativeModel,
  pool: unknown,
  kvModel: number,
  options: { kvFormat: string; threads: number; pool?: unknown },
) => NativeExecutor;

/** The addon's generateModel (cpp/addon/generate.cc). */
export type NativeGenerateModel = (
  options: {
    shape: string;
    layers?: number;
    vocab?: number;
    dtype?: string;
    format: string;
    seed?: number;
    out: string;
    maxShardBytes?: number;
  },
  onProgress?: (fraction: number) => void,
) => NativeJob<GeneratedModel>;

/** The addon's quantizeGguf (cpp/addon/quantize.cc). */
export type NativeQuantizeGguf = (
  src: string,
  dst: string,
  type: string,
  onProgress?: (fraction: number) => void,
) => NativeJob<QuantizedGguf>;

/** The addon's ThreadPool (cpp/addon/thread_pool.cc). */
export interface NativeThreadPool {
  /** Threads that run a step, the stepping one included: the requested count, clamped to the usable cores. */
  readonly size: number;
  /** Stops the threads once no executor shares them; idempotent. */
  dispose(): void;
}

/** `threads`: 0 = every core this process may use; more than that is clamped to it. */
export type NativeThreadPoolConstructor = new (threads: number) => NativeThreadPool;
