/**
 * The simulator's public shapes: a system under test, the inputs of one run, a mid-run
 * re-placement, and what a run reports.
 * @module
 */
import type { CostModel } from '../scheduler/cost-model.js';
import type { LocalPolicy } from '../scheduler/local/types.js';
import type { DeviceSpec, ModelSpec, PlacementPlan } from '../scheduler/types.js';
import type { KvAccountOptions, KvPolicyName } from './kv/index.js';
import type { Arrival } from './workload.js';

/** A system under test: a plan, a KV policy and a local policy. */
export interface SimSystem {
  readonly name: string;
  readonly plan: PlacementPlan;
  readonly kv: KvPolicyName;
  readonly policy: LocalPolicy;
  /** `online`: the policy sees a latency model corrected from measured steps; `static`: the solo profile. */
  readonly latency: 'online' | 'static';
  /**
   * MuxServe's split: each replica runs its prefills and its decodes as two jobs that step at the
   * same time on the device (two MPS clients), sharing its KV and contending for compute and
   * bandwidth like any two co-located steps; a sequence moves to the decode job at its first token.
   */
  readonly splitPrefillDecode?: boolean;
  /**
   * MuxServe's adaptive batch scheduling (lib/sim/adbs.ts; needs `splitPrefillDecode`): per-model
   * KV token-block quotas capping its sequences, re-divided by use every 8 s (rounding remainders
   * to the longest queues), whole-prompt prefill batches, and prefill jobs first on the SMs.
   */
  readonly adaptiveBatching?: boolean;
}

/** Inputs of one simulation. */
export interface SimConfig {
  readonly costModel: CostModel;
  readonly models: readonly ModelSpec[];
  readonly devices: readonly DeviceSpec[];
  readonly system: SimSystem;
  readonly arrivals: readonly Arrival[];
  /** Simulated time after the last arrival before the run stops; default 60 s. */
  readonly drainMs?: number;
  /** Chunked-prefill token budget per iteration; default 2048 (the reference's). */
  readonly maxBatchTokens?: number;
  /** Most iterations one decode-only event may cover; default 32 (1 = none). */
  readonly maxFastForward?: number;
  /** Waiting requests a snapshot carries (the head of the queue); default 256. */
  readonly snapshotWindow?: number;
  /**
   * Co-location interference: `work` (default) shares compute and bandwidth by what each running
   * step demands (lib/scheduler/interference.ts); `count` is the older precision-blind rule
   * (slowdown by the number of active replicas, {@link CostModel.colocationSlowdown}).
   */
  readonly interference?: 'work' | 'count';
  /** KV policy knobs (the kvcached-style pool's map cost). */
  readonly kvOptions?: KvAccountOptions;
  /** Online re-placement: the plan changes to `plan` at `atMs`, moved replicas paying a migration. */
  readonly replan?: SimReplan;
}

/**
 * A mid-run re-placement. From `atMs` arrivals go to the new plan's replicas. A replica the new
 * plan moves (or drops) stops taking requests, hands its not-yet-started requests to the new
 * plan's replicas of the model and drains the running ones; the new replicas start once every old
 * replica of the model has drained and their weights are loaded (weight bytes per device /
 * `hostToDeviceBytesPerS`), requests queueing meanwhile, so the migration costs drain + load.
 * Unmoved replicas carry on. A device's KV pool is sized for the tighter of the two plans, and
 * shrinks further while old and new weights are both resident on it.
 */
export interface SimReplan {
  readonly atMs: number;
  readonly plan: PlacementPlan;
  /** Default 25 GB/s: pinned host-to-device copies over PCIe 5.0 x16 reach about half its 64 GB/s. */
  readonly hostToDeviceBytesPerS?: number;
  /**
   * Make-before-break: a moved model's new replicas load their weights at once and serve as soon as
   * loaded while the old ones drain, instead of waiting for the drain. Memory holds both copies
   * meanwhile: what the new weights need beyond the device's pool is withheld from its KV until the
   * old copy drains, and a load whose memory the KV holds waits until sequences free it
   * (lib/sim/migration.ts).
   */
  readonly overlap?: boolean;
}

/** One replica started by a re-placement. */
export interface SimMigration {
  readonly model: string;
  readonly replica: number;
  readonly devices: readonly string[];
  /** When the model's old replicas had drained (with `overlap`: when the load began). */
  readonly drainedAtMs: number;
  /** When the new replica took its first step: drained + weights load. */
  readonly readyAtMs: number;
}

/** What happened to one request. */
export interface RequestOutcome {
  readonly id: number;
  readonly model: string;
  readonly arrivalMs: number;
  readonly state: 'finished' | 'dropped' | 'queued' | 'running';
  readonly ttftMs?: number;
  readonly tpotMs?: number;
  readonly finishMs?: number;
  readonly outputTokens: number;
  readonly sloMs: number;
  /** Whether it met its SLO (see {@link SimResult.sloAttainment}). */
  readonly attained: boolean;
  /** The model's TPOT SLO, when it has one: then the request must also finish within it on average. */
  readonly tpotSloMs?: number;
}

/** Per-model and total results. */
export interface SimResult {
  readonly system: string;
  readonly arrivals: number;
  readonly finished: number;
  readonly dropped: number;
  /** Still waiting or running when the run stopped. */
  readonly inFlight: number;
  /**
   * Requests that met their SLO / all arrivals (dropped ones are misses): TTFT under the TTFT SLO
   * and, for a model with a TPOT SLO, finished with a mean TPOT within it.
   */
  readonly sloAttainment: number;
  /** Output tokens of finished requests / time of the last completion, tokens per second. */
  readonly tokenThroughput: number;
  readonly ttftP50Ms: number;
  readonly ttftP99Ms: number;
  readonly tpotP50Ms: number;
  readonly tpotP99Ms: number;
  readonly preemptions: number;
  readonly iterations: number;
  /**
   * Share of iterations whose shape lies outside the profiled grid (batch above its largest
   * profiled batch, prompt per sequence or decode context above its longest profiled length),
   * so their time is a linear extrapolation of the profile.
   */
  readonly extrapolatedShare: number;
  readonly perModel: Readonly<Record<string, { arrivals: number; attained: number; dropped: number; finished: number; sloMs: number }>>;
  readonly outcomes: readonly RequestOutcome[];
  /** Replicas a re-placement started, with their migration times. */
  readonly migrations: readonly SimMigration[];
}
