/**
 * The Engine's public types: its options, what loadModel and stats() return, and the placement
 * shapes it re-exports. Kept apart from the Engine class so a reader of the API finds it whole.
 * @module
 */
import type { DeviceOptions, DeviceStats } from './device.js';
import type { EnginePlacement, PlacementEvent, ReplanResult } from './global-scheduler.js';
import type { KvPoolKind, KvPoolTuning } from './kv-memory.js';
import type { ModelCounters } from './model-stats.js';
import type { DeviceLoad, PlacementMove, ReplicaDecision } from './placement.js';
import type { ArrivalRate } from './rate-meter.js';
import type { KvFormat } from '../kv-pool.js';
import type { Calibration, Model } from '../model.js';
import type { PrecisionName, PrecisionSpec } from '../precision.js';
import type { MeasuredLatencyModel } from '../scheduler/measured-latency.js';

/**
 * How a device shares its KV memory and picks each iteration's work.
 * - `fineserve`: one KV Slab for all co-located models (per-model minimum reserve) and the
 *   SLO-aware local policy (EDF admission that meets every deadline, TPOT guard, cheapest-victim
 *   preemption), driven by latency measured online.
 * - `static-fcfs`: the vLLM-style baseline: a fixed KV partition per model, first come first served.
 * - `saab`: one KV Slab and the reference FineServe local policy (static per-token TTFT estimate).
 */
export type EnginePolicy = 'fineserve' | 'static-fcfs' | 'saab';

/** Options of {@link Engine.create}. */
export interface EngineOptions {
  /**
   * Where models run. `'auto'` (default) and `'cpu'`: the CPU. `['cuda:0']`: that GPU, with the
   * KV Slab in its memory and models served by the CUDA backend (an addon built with CUDA; see
   * `devices()`). `'auto'` keeps to the CPU until the CUDA backend has been verified on hardware
   * (issue #8): choose a GPU by its id.
   */
  readonly devices?: 'auto' | 'cpu' | readonly (string | DeviceOptions)[];
  /** Bytes of the KV Slab of each device (its one allocation, made up front); default 1 GiB. */
  readonly slabBytes?: number;
  /**
   * Worker threads of each CPU device, shared by its models (default every core this process may
   * use); with `sharing: 'space'`, the threads of each model (default 1).
   */
  readonly threads?: number;
  /**
   * How co-located models share a CPU device. `'time'` (default): their steps take turns on one
   * thread pool of `threads` workers. `'space'`: each model gets a pool of its own and their
   * steps run at once, as on a GPU, where each model's executor has its own CUDA stream (GPU
   * devices always share in space). The models' threads together may not exceed the cores.
   */
  readonly sharing?: 'time' | 'space';
  /** Default `fineserve`. */
  readonly policy?: EnginePolicy;
  /** `static-fcfs`: the number of equal partitions the KV memory is cut into; default 4. */
  readonly staticPartitions?: number;
  /**
   * The KV pool alone, the scheduler policy kept (for comparing pools): `kv-slab` (default, and
   * for `static-fcfs` `static`), `static` (`staticPartitions` equal partitions), `unified`
   * (blocks padded to the largest model's, MuxServe-style) or `paged` (pages mapped on demand at
   * a modelled cost, kvcached-style). Each holds at most `slabBytes` of KV per device.
   */
  readonly kvPool?: KvPoolKind;
  /** Sizes of the `unified` and `paged` pools; see {@link KvPoolTuning}. */
  readonly kvPoolOptions?: KvPoolTuning;
  /**
   * With several devices: how often the global scheduler re-plans at the arrival rates and busy
   * shares measured, moving a replica live where a device is seen in trouble; default 5,000 (0:
   * never, placement at load only). bench:serve-multi measured 2.0-3.0x the attainment of placing
   * once when demand moves between models, and 1.1-1.7x when the placement made at load still
   * suits the new rates (README); {@link Engine.replan} re-plans on demand.
   */
  readonly replanIntervalMs?: number;
  /**
   * A model just loaded, or moved by a re-plan, is not moved (again) for this long, ms (default
   * 15,000): its rate is measured over about 10 s and its latency model over its first steps, so
   * a quicker move would answer noise, not a shift.
   */
  readonly replanCooldownMs?: number;
  /** Called after each change of placement (a load, an unload, a re-plan's moves). */
  readonly onPlacement?: (event: PlacementEvent) => void;
}

export type { DeviceLoad, DeviceOptions, EnginePlacement, PlacementEvent, PlacementMove, ReplanResult, ReplicaDecision };

/** Latency objectives of a served model, ms. */
export interface ServingSlo {
  /** Time to first token. */
  readonly ttftMs?: number;
  /** Time per output token after the first. */
  readonly tpotMs?: number;
}

/** Options of {@link Engine.loadModel}. */
export interface EngineLoadOptions {
  /** Name requests use (`generate({ model: id })`). */
  readonly id: string;
  /** A `.gguf` file or a Hugging Face folder, or a {@link Model} already loaded. */
  readonly source: string | Model;
  /** Default `'auto'`; see {@link PrecisionName}. Quantized at load when the file is F32/F16/BF16. */
  readonly precision?: PrecisionName | PrecisionSpec;
  /** PTQ calibration data (see {@link Model.load}). */
  readonly calibration?: Calibration;
  /**
   * A Jinja chat template for `messages` requests, used instead of the model's own (and needed
   * when its files bring none); a request's own `chatTemplate` wins over it.
   */
  readonly chatTemplate?: string;
  readonly slo?: ServingSlo;
  /** Context length served; default and maximum the model's. */
  readonly maxContext?: number;
  /** Most sequences in one step; default 64. */
  readonly maxBatch?: number;
  /** Prompt tokens per step (chunked prefill budget); default 256. */
  readonly maxBatchTokens?: number;
  /** KV tokens this model can always get, whatever the others hold (fineserve, saab); default one full context. */
  readonly kvReserveTokens?: number;
  /**
   * When the scheduler finds a request cannot meet its TTFT SLO: `true` ends it at once with
   * finishReason `error` (`ERR_ENGINE_SLO_UNREACHABLE`), as the paper's scheduler drops it;
   * `false` (default) defers it to run best effort behind the requests that can still make it.
   */
  readonly dropLate?: boolean;
  /** Serve it on this device only (one of the engine's); default: the global scheduler chooses. */
  readonly device?: string;
  /** Exactly this many replicas, each on its own device; default: the global scheduler chooses (at least 1). */
  readonly replicas?: number;
  /** Requests per second expected, what placement uses until rates are measured; default 1. */
  readonly expectedRate?: number;
  readonly onProgress?: (fraction: number) => void;
  readonly signal?: AbortSignal;
}

/** What {@link Engine.loadModel} resolves with. */
export interface LoadedModelInfo {
  readonly id: string;
  /** The device of its first replica (e.g. `cpu`, `cpu:1`). */
  readonly device: string;
  /** The devices of its replicas. */
  readonly devices: readonly string[];
  readonly precision: PrecisionSpec;
  /** Its precision's shorthand, e.g. `w4a16-kv8`. */
  readonly precisionName: string;
  readonly kvFormat: KvFormat;
  /** Prompt plus generated tokens one request may hold. */
  readonly maxContext: number;
  /** Bytes of its weights as served (after quantization). */
  readonly weightBytes: number;
  /** KV bytes per token, scales included. */
  readonly kvBytesPerToken: number;
  /** Tokens per KV block in the slab (16, or fewer for shapes whose blocks would not fit 8 to a slab). */
  readonly tokensPerBlock: number;
}

/** One model's part of {@link EngineStats}. */
export interface ModelStats extends ModelCounters, LoadedModelInfo {
  readonly waiting: number;
  readonly running: number;
  readonly liveBlocks: number;
  readonly liveTokens: number;
  readonly kvHeldBytes: number;
  /** The online latency model's current coefficients (of its first replica), ms. */
  readonly latency: MeasuredLatencyModel['coefficients'];
  /** Requests per second arriving: in the last 10 s, and an exponentially decayed estimate. */
  readonly rate: ArrivalRate;
  readonly replicas: readonly ReplicaStats[];
}

/** One replica's part of {@link ModelStats}. */
export interface ReplicaStats {
  readonly device: string;
  /** 'draining' during a migration away from its device. */
  readonly state: 'serving' | 'draining';
  readonly waiting: number;
  readonly running: number;
  readonly liveBlocks: number;
  readonly liveTokens: number;
  readonly kvHeldBytes: number;
  readonly latency: MeasuredLatencyModel['coefficients'];
}


export type { DeviceStats };

/** What {@link Engine.stats} returns. */
export interface EngineStats {
  readonly policy: EnginePolicy;
  readonly models: readonly ModelStats[];
  readonly devices: readonly DeviceStats[];
}
