/**
 * The simulator's mutable state: sequences, devices with their KV accounts, replicas (one engine
 * each, or two jobs under MuxServe's split), and the run context every step function shares.
 * @module
 */
import type { CostEntry, CostModel } from '../scheduler/cost-model.js';
import type { StepDemand } from '../scheduler/interference.js';
import type { IterationShape, LatencyModel } from '../scheduler/latency-model.js';
import type { ModelSpec } from '../scheduler/types.js';
import type { AdbsQuota } from './adbs.js';
import type { EventHeap } from './heap.js';
import type { KvAccount } from './kv/index.js';
import type { RequestOutcome, SimConfig, SimMigration, SimSystem } from './sim-types.js';

/** One request as the simulator tracks it. */
export interface Seq {
  readonly id: number;
  readonly arrivalMs: number;
  readonly deadlineMs: number;
  readonly priority: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
  decodedTokens: number;
  computedTokens: number;
  targetTokens: number;
  blocks: number;
  started: boolean;
  firstTokenMs: number;
  finishMs: number;
}

/** A simulated GPU. */
export interface Device {
  readonly account: KvAccount;
  /** KV bytes the first plan leaves it, and the pool its account has (the tighter of both plans). */
  readonly kvPlanned: number;
  readonly kvPool: number;
  /** Weights and activations of re-placement replicas loading or loaded on it, bytes. */
  weightsIn: number;
  /** Weights and activations of moved-away replicas that have drained off it, bytes. */
  weightsOut: number;
  active: number;
  /** Demand of the step each replica is running on it now. */
  readonly steps: Map<number, StepDemand>;
}

/** The iteration a replica is running: its prefill chunks, decodes, and how many steps it covers. */
export interface Work {
  prefill: { seq: Seq; tokens: number }[];
  decode: Seq[];
  steps: number;
  shape: IterationShape;
  ms: number;
}

/** One engine of a placement (or one of its two jobs under MuxServe's split). */
export interface Replica {
  readonly index: number;
  readonly model: ModelSpec;
  readonly entry: CostEntry;
  readonly sloMs: number;
  readonly maxBatch: number;
  readonly minBatch: number;
  readonly devices: readonly Device[];
  readonly slots: readonly number[];
  readonly latency: LatencyModel;
  readonly ttftPerTokenMs: number;
  readonly queue: Seq[];
  head: number;
  readonly gone: Set<number>;
  queued: number;
  running: Seq[];
  busy: boolean;
  active: boolean;
  wakePending: boolean;
  /** A replica started by a re-placement steps from then on (Infinity until its migration ends). */
  readyAtMs: number;
  /** An old-plan replica the re-placement moved: it takes no arrivals and drains. */
  retiring: boolean;
  /** Split prefill/decode: on the prefill job, its decode job; on the decode job, its prefill job. */
  decodeLane?: Replica;
  prefillLane?: Replica;
  /** MuxServe's adaptive batch scheduling: the model's quota (on its prefill job). */
  adbs?: AdbsQuota;
  work?: Work | undefined;
}

export type SimEvent = { kind: 'end'; replica: Replica } | { kind: 'wake'; replica: Replica } | { kind: 'replan' } | { kind: 'adapt' } | { kind: 'load'; model: string };

/** What the summary needs of each request. */
export interface OutcomeRecord {
  seq: Seq;
  model: string;
  sloMs: number;
  tpotSloMs: number | undefined;
  state: RequestOutcome['state'];
}

/** Everything one run shares between its step functions. */
export interface SimContext {
  readonly config: SimConfig;
  readonly costModel: CostModel;
  readonly system: SimSystem;
  /** The models by id. */
  readonly specs: ReadonlyMap<string, ModelSpec>;
  readonly maxBatchTokens: number;
  readonly maxFF: number;
  readonly window: number;
  readonly stopMs: number;
  readonly workInterference: boolean;
  readonly devices: Map<string, Device>;
  readonly replicas: Replica[];
  /** Replicas taking each model's arrivals before a re-placement, and after it. */
  readonly byModel: Map<string, Replica[]>;
  readonly byModelAfter: Map<string, Replica[]>;
  /** Replicas a re-placement starts, and the old ones it moves. */
  readonly fresh: Replica[];
  readonly retiring: Replica[];
  readonly readyModels: Set<string>;
  /** Models whose moved-away replicas have all drained (their weights are gone). */
  readonly drainedModels: Set<string>;
  readonly migrations: SimMigration[];
  readonly hostToDeviceBytesPerS: number;
  readonly outcomes: Map<number, OutcomeRecord>;
  readonly heap: EventHeap<SimEvent>;
  /** The first arrival of `model` after `now` (Infinity when none), for fast-forward bounds. */
  readonly nextArrivalOf: (model: string, now: number) => number;
  preemptions: number;
  iterations: number;
  extrapolated: number;
}
