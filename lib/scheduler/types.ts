/**
 * Inputs and outputs of the global scheduler: the models to serve (with expected rates and SLOs),
 * the devices to serve them on, and the versioned placement plan every placement policy returns.
 * @module
 */

/** Latency objectives of a model. TTFT is what the paper (and the reference) measures attainment by. */
export interface Slo {
  readonly ttftMs: number;
  /** Optional: the local scheduler's TPOT guard keeps decode steps under it. */
  readonly tpotMs?: number;
}

/** A model to place, as in models.json. */
export interface ModelSpec {
  /** Unique name, e.g. `chat-int4`. */
  readonly id: string;
  /** Architecture, e.g. `llama-3.1-8b` (see MODEL_FAMILIES). */
  readonly family: string;
  /** Precision shorthand, e.g. `w4a16` (see PRECISIONS). */
  readonly precision: string;
  /** Expected requests per second. */
  readonly rate: number;
  /** Absent: derived the reference's way (40 × batch-1 TTFT at 903 tokens + 4 ms, scaled). */
  readonly slo?: Slo;
  /** Higher is served first by the FineServe local policy; default 0. */
  readonly priority?: number;
}

/** A device, as in devices.json. */
export interface DeviceSpec {
  readonly id: string;
  readonly memoryBytes: number;
  /** Which profile set times it; only `h100` is calibrated. */
  readonly speedClass?: string;
  /** Devices of one node can form a TP group; default node 0. */
  readonly node?: number;
}

/** Per-model numbers the planners derive before placing (the reference's §3.3 step 2). */
export interface ModelDemand {
  readonly id: string;
  readonly tp: number;
  /** Replicas (data parallel) this model needs to meet its rate within the SLO. */
  readonly replicas: number;
  /** TTFT SLO used, ms. */
  readonly sloMs: number;
  /** Largest batch whose predicted TTFT meets the SLO. */
  readonly sloMaxBatch: number;
  /** Smallest batch whose throughput reaches the replica's rate. */
  readonly rateMinBatch: number;
  /** Largest batch whose KV fits a device group next to the weights. */
  readonly cacheMaxBatch: number;
  readonly feasible: boolean;
}

/** One replica of one model on a group of devices. */
export interface Placement {
  readonly model: string;
  readonly replica: number;
  /** Device ids, TP group in rank order. */
  readonly devices: readonly string[];
  readonly tp: number;
  /** Share of the model's traffic this replica gets. */
  readonly rate: number;
  /** Batch bounds the local scheduler enforces. */
  readonly maxBatch: number;
  readonly minBatch: number;
  /** KV bytes per device this replica is guaranteed (its slab reserve, or its static partition). */
  readonly reserveBytes: number;
  readonly sloMs: number;
}

/** Memory of one device under a plan. */
export interface DevicePlan {
  readonly id: string;
  readonly models: readonly string[];
  readonly weightBytes: number;
  /** Activation and runtime memory budgeted for the engines on it. */
  readonly activationBytes: number;
  /** What is left for KV. */
  readonly kvBytes: number;
}

/** Which constraint kept a model (or one of its replicas) off every device. */
export type PlanConstraint = 'memory' | 'slo' | 'compute' | 'profile';

/** A model a plan could not place, and why. */
export interface Unplaced {
  readonly model: string;
  readonly reason: string;
  /** The constraint that failed; absent only in plans made before it was recorded. */
  readonly constraint?: PlanConstraint;
}

/** A placement plan. Plans are values: a re-plan returns a new one with a higher version. */
export interface PlacementPlan {
  /** Policy that made it, e.g. `fineserve`, `reference`, `prism`. */
  readonly policy: string;
  readonly version: number;
  /** The rates it was made for, by model id. */
  readonly rates: Readonly<Record<string, number>>;
  readonly placements: readonly Placement[];
  readonly devices: readonly DevicePlan[];
  /** Models that could not be placed, with why. */
  readonly unplaced: readonly Unplaced[];
  /** False when any model is unplaced: such a plan is a failed plan, not a plan that drops a model. */
  readonly feasible: boolean;
  /**
   * Placed models with fewer replicas than their rate needs (an extra replica found no device of
   * its own): they are served, but over their SLO-limited capacity at the planned rate.
   */
  readonly underProvisioned?: readonly Unplaced[];
  /** Policy-specific score (higher is better); for ours, predicted SLO goodput tokens/s. */
  readonly score: number;
  /** How the device's KV is split into pools: one shared pool, or the policy's static split. */
  readonly kvLayout: 'shared' | 'static-per-model' | 'per-layer-count' | 'unified' | 'paged';
}

/** Everything a placement policy needs. */
export interface PlanInput {
  readonly models: readonly ModelSpec[];
  readonly devices: readonly DeviceSpec[];
  /** Scale on the derived SLO when a model has none (the reference's default is 40). */
  readonly sloScale?: number;
  /**
   * Mean prompt and output tokens of the expected traffic, where the operator knows them as it
   * knows the rates. Our planner's interference-aware load uses them; absent, it (and every
   * other rule) plans at the reference's 0.8 × LMSYS-Chat p95 lengths, about 3x ShareGPT means.
   */
  readonly meanLengths?: { readonly input: number; readonly output: number };
}
