/**
 * The Engine's global scheduler at run time: where each model's replicas go when it is loaded
 * (measured on each kind of device, then placed by `placement.ts`), the current plan scored at
 * the measured rates, re-planning, and live migration. The Engine owns the devices and the
 * model groups; this decides and moves replicas between them.
 * @module
 */
import { EngineError, KvError } from '../errors.js';
import type { MeasuredLatencyModel } from '../scheduler/measured-latency.js';
import { checkOwnThreads, type Device } from './device.js';
import type { ModelGroup, Replica } from './model-group.js';
import { evaluatePlacement, type DeviceLoad, improvePlacement, placeModel, PlacementFailure, type PlacementDevice, type PlacementModel, type PlacementMove, type ReplicaDecision } from './placement.js';
import { attachReplica, freeReplica, type ReplicaFactory } from './replica.js';

/** What {@link EngineOptions.onPlacement} receives. */
export interface PlacementEvent {
  /** `migrate`: {@link Engine.migrate} was called; `replan`: the global scheduler moved replicas. */
  readonly cause: 'load' | 'unload' | 'replan' | 'migrate';
  /** The model loaded or unloaded. */
  readonly model?: string;
  /** What changed: replicas added (a load), moved, added or removed (a re-plan). */
  readonly moves: readonly PlacementMove[];
  /** replan, migrate: how long the moves took, ms (attaching the new replicas, draining the old). */
  readonly durationMs?: number;
  readonly placement: EnginePlacement;
}

/** What {@link Engine.placement} returns. */
export interface EnginePlacement {
  /** Counts the changes of placement since the engine was made. */
  readonly version: number;
  /** Predicted SLO goodput of the plan, output tokens per second (the planner's objective). */
  readonly score: number;
  readonly models: readonly {
    readonly id: string;
    /** Arrival rate the plan is scored at (the measured EWMA), requests per second. */
    readonly rate: number;
    /** Typical lengths of its requests (measured once requests finished). */
    readonly promptTokens: number;
    readonly outputTokens: number;
    /** Each replica with its predicted load and attainment and the reason for its place. */
    readonly replicas: readonly ReplicaDecision[];
  }[];
  /** Each device's predicted load, and the share of its time its replicas' steps took lately. */
  readonly devices: readonly (DeviceLoad & { readonly measuredUtilization: number })[];
}

/** What {@link Engine.replan} resolves with. */
export interface ReplanResult {
  /** The moves made, in order. */
  readonly moves: readonly PlacementMove[];
  /** The plan's score (predicted SLO goodput, tokens/s) before and after them. */
  readonly scoreBefore: number;
  readonly scoreAfter: number;
}


export type { DeviceLoad, PlacementMove, ReplicaDecision };

/** Recent SLO attainment every model must have for a re-plan to leave the placement alone. */
const MEETING = 0.9;
/** A measured busy share is trusted over the prediction up to this factor above it... */
const MAX_SCALE = 4;
/** ...and this far below (a rate estimate lags a drop in traffic; the busy share follows it). */
const MIN_SCALE = 1 / 8;
/**
 * After a re-plan's moves, the next waits this long (or the cool-down, if shorter): the busy
 * shares and attainment it acts on must first show what the moves did.
 */
const SETTLE_MS = 3_000;
/** Below this predicted load (share of a device) the measurement is mostly noise: no scaling. */
const MIN_CALIBRATED_LOAD = 0.02;
/** A device busier than this is saturated: its models' measured shares are lower bounds. */
const SATURATED = 0.95;

/** Busy shares measured now: per model, its settled serving replicas' by device; per device, the sum. */
interface MeasuredBusy {
  readonly replicas: ReadonlyMap<string, ReadonlyMap<string, number>>;
  readonly devices: ReadonlyMap<string, number>;
}

/** See the module comment. */
export class GlobalScheduler {
  readonly #devices: readonly Device[];
  readonly #models: ReadonlyMap<string, ModelGroup>;
  readonly #factory: ReplicaFactory;
  readonly #cooldownMs: number;
  readonly #onPlacement: ((event: PlacementEvent) => void) | undefined;
  readonly #isOpen: () => boolean;
  /** Moves in flight: close() waits for them to give back what they took. */
  readonly #migrations = new Set<Promise<unknown>>();
  #replanning: Promise<ReplanResult> | undefined;
  #version = 0;
  /** When the last re-plan's moves ended (performance.now() ms). */
  #lastMoveMs = -Infinity;

  constructor(init: {
    devices: readonly Device[];
    models: ReadonlyMap<string, ModelGroup>;
    factory: ReplicaFactory;
    cooldownMs: number;
    onPlacement: ((event: PlacementEvent) => void) | undefined;
    isOpen: () => boolean;
  }) {
    this.#devices = init.devices;
    this.#models = init.models;
    this.#factory = init.factory;
    this.#cooldownMs = init.cooldownMs;
    this.#onPlacement = init.onPlacement;
    this.#isOpen = init.isOpen;
  }

  #checkOpen(what: string): void {
    if (!this.#isOpen()) throw new EngineError('ERR_ENGINE_CLOSED', `${what}: the engine is closed`);
  }

  /**
   * Measures the model on each kind of device it may go to (a warm-up replica on one of each),
   * asks the placement where its replicas go, and attaches them there (keeping the measured
   * replicas that were chosen). The replicas are not serving yet; `undo` frees them.
   */
  async place(group: ModelGroup, undo: (() => void)[]): Promise<Replica[]> {
    const candidates = group.pinned === undefined ? this.#devices : this.#devices.filter((d) => d.id === group.pinned);
    const attached = new Map<string, Replica>();
    undo.push(() => {
      for (const r of attached.values()) freeReplica(r);
    });
    const attach = async (d: Device): Promise<Replica> => {
      checkOwnThreads(d, group.id);
      const a = await attachReplica(group, d, this.#factory);
      attached.set(d.id, a.replica);
      group.footprint = a.footprint;
      group.loadMs = a.ms;
      if (!group.costs.has(d.kind)) group.costs.set(d.kind, a.replica.served.latency);
      return a.replica;
    };
    let lastError: unknown;
    for (const kind of new Set(candidates.map((d) => d.kind))) {
      // The least crowded device of the kind: its slab is likeliest to take the model's reserve.
      const ofKind = candidates.filter((d) => d.kind === kind).sort((a, b) => a.scheduler.models.length - b.scheduler.models.length);
      for (const d of ofKind) {
        try {
          await attach(d);
          break;
        } catch (err) {
          if (!(err instanceof KvError) && !(err instanceof EngineError && err.code === 'ERR_ENGINE_KV_OUT_OF_MEMORY')) throw err;
          lastError = err;
        }
      }
      this.#checkOpen('loadModel');
    }
    if (attached.size === 0) throw lastError;
    const placed = placeModel(this.#placementModels(group), this.#placementDevices(), this.#assignment(), group.id);
    if (placed instanceof PlacementFailure) throw new EngineError('ERR_ENGINE_PLACEMENT', placed.message);
    const chosen = placed.assignment.get(group.id)!;
    const replicas: Replica[] = [];
    for (const id of chosen) {
      const d = this.#devices.find((x) => x.id === id)!;
      replicas.push(attached.get(id) ?? (await attach(d)));
      this.#checkOpen('loadModel');
    }
    for (const [id, r] of [...attached]) {
      if (chosen.includes(id)) continue;
      attached.delete(id);
      freeReplica(r);
    }
    return replicas;
  }

  /** The planner's view of every loaded model (and `adding`, being loaded). */
  #placementModels(adding?: ModelGroup): PlacementModel[] {
    const groups = [...this.#models.values()].filter((g) => g.state !== 'closed');
    if (adding !== undefined) groups.push(adding);
    const now = performance.now();
    return groups.map((g) => placementModel(g, now));
  }

  #placementDevices(): PlacementDevice[] {
    return this.#devices.map((d) => ({ id: d.id, kind: d.kind, memoryBytes: d.memoryBytes, kvBytes: d.slabBytes }));
  }

  /** Where each model's serving replicas are now. */
  #assignment(): Map<string, readonly string[]> {
    const a = new Map<string, readonly string[]>();
    for (const g of this.#models.values()) if (g.state !== 'closed') a.set(g.id, g.serving.map((r) => r.device.id));
    return a;
  }

  /** Counts a change of placement and tells the listener. */
  placed(cause: PlacementEvent['cause'], model: string | undefined, moves: readonly PlacementMove[], durationMs?: number): void {
    this.#version++;
    if (this.#onPlacement === undefined) return;
    try {
      this.#onPlacement({ cause, ...(model === undefined ? {} : { model }), moves, ...(durationMs === undefined ? {} : { durationMs }), placement: this.placement() });
    } catch {
      // A listener that throws must not undo a placement that happened.
    }
  }

  /**
   * The current placement: each model's replicas with their predicted load, TTFT, attainment and
   * the reason for where they are, each device's memory and load, and the plan's score
   * (predicted SLO goodput, output tokens per second), at the arrival rates measured now.
   */
  placement(): EnginePlacement {
    const busy = this.#measuredBusy(performance.now());
    const models = this.#calibrated(this.#placementModels(), busy);
    const e = evaluatePlacement(models, this.#placementDevices(), this.#assignment());
    return {
      version: this.#version,
      score: e.score,
      models: models.map((m) => ({ id: m.id, rate: m.rate, promptTokens: m.promptTokens, outputTokens: m.outputTokens, replicas: e.replicas.filter((r) => r.model === m.id) })),
      devices: e.devices.map((d) => ({ ...d, measuredUtilization: busy.devices.get(d.id) ?? 0 })),
    };
  }

  /** Each serving replica's measured busy share (settled meters only), and each device's sum. */
  #measuredBusy(nowMs: number): MeasuredBusy {
    const replicas = new Map<string, Map<string, number>>();
    const devices = new Map<string, number>();
    for (const g of this.#models.values()) {
      if (g.state === 'closed') continue;
      for (const r of g.replicas) {
        const share = r.served.busy.share(nowMs);
        devices.set(r.device.id, (devices.get(r.device.id) ?? 0) + share);
        if (r.state !== 'serving' || !r.served.busy.settled(nowMs)) continue;
        const of = replicas.get(g.id) ?? new Map<string, number>();
        of.set(r.device.id, share);
        replicas.set(g.id, of);
      }
    }
    return { replicas, devices };
  }

  /**
   * The models with their load scaled to what their replicas are measured to take: a latency
   * model learnt on a shared machine, or a queueing estimate of time sharing, can be off by a
   * factor, and re-planning on it alone has moved models the wrong way. A device that is
   * saturated shows only a lower bound of its models' demand, so there the scale only rises.
   */
  #calibrated(models: PlacementModel[], busy: MeasuredBusy): PlacementModel[] {
    const predicted = evaluatePlacement(models, this.#placementDevices(), this.#assignment());
    return models.map((m) => {
      const measured = busy.replicas.get(m.id);
      const mine = predicted.replicas.filter((r) => r.model === m.id && measured?.has(r.device) === true);
      const want = mine.reduce((a, r) => a + r.load, 0);
      if (measured === undefined || mine.length === 0 || want < MIN_CALIBRATED_LOAD) return m;
      const seen = mine.reduce((a, r) => a + measured.get(r.device)!, 0);
      const saturated = mine.some((r) => (busy.devices.get(r.device) ?? 0) >= SATURATED);
      const scale = Math.min(MAX_SCALE, Math.max(saturated ? 1 : MIN_SCALE, seen / want));
      return { ...m, loadScale: scale };
    });
  }

  /**
   * Re-plans at the arrival rates measured now and applies the moves it finds worth their cost:
   * a replica moved, added or removed, each live (the new replica serves before the old one
   * drains; nothing is lost or run twice). Resolves when the moves are done. Also runs every
   * `replanIntervalMs`.
   */
  async replan(): Promise<ReplanResult> {
    if (this.#replanning !== undefined) return this.#replanning;
    const job = this.#replan();
    this.#replanning = job;
    try {
      return await job;
    } finally {
      this.#replanning = undefined;
    }
  }

  /**
   * Moves `g`'s replica on `from` to `to` live (see {@link replan}); throws EngineError
   * (`ERR_ENGINE_PLACEMENT`) for a move the placement's constraints forbid.
   */
  async migrate(g: ModelGroup, from: string, to: string): Promise<void> {
    const on = g.serving.map((r) => r.device.id);
    const move: PlacementMove = { kind: 'move', model: g.id, from, to };
    const without = new Map(this.#assignment()).set(g.id, on.filter((d) => d !== from));
    const models = this.#placementModels().map((m) => (m.id === g.id ? { ...m, device: to, replicas: 1 } : m));
    const placed = placeModel(models, this.#placementDevices(), without, g.id);
    if (placed instanceof PlacementFailure) throw new EngineError('ERR_ENGINE_PLACEMENT', placed.message);
    const start = performance.now();
    if (await this.#track(this.#migrate(g, move))) this.placed('migrate', g.id, [move], performance.now() - start);
  }

  /** Resolves when every move in flight has ended (close() lets their drains end first). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.#migrations]);
  }

  /** Whether a move is in flight (the periodic re-plan waits for it). */
  get moving(): boolean {
    return this.#migrations.size > 0 || this.#replanning !== undefined;
  }

  async #track<T>(job: Promise<T>): Promise<T> {
    this.#migrations.add(job);
    try {
      return await job;
    } finally {
      this.#migrations.delete(job);
    }
  }

  async #replan(): Promise<ReplanResult> {
    const now = performance.now();
    const busy = this.#measuredBusy(now);
    const models = this.#calibrated(this.#placementModels(), busy).filter((m) => this.#models.get(m.id)?.state === 'ready');
    // A model being unloaded drains where it is and is no one's to move.
    const assignment = new Map([...this.#assignment()].filter(([id]) => models.some((m) => m.id === id)));
    const frozen = new Set([...this.#models.values()].filter((g) => now - g.lastMoveMs < this.#cooldownMs).map((g) => g.id));
    // Moves cost real time (loads, drains) and the plan's predictions are only predictions: while
    // every model that has finished requests lately meets its SLOs on most of them, nothing moves.
    const measured = [...this.#models.values()].map((g) => g.stats.recentAttainment).filter((a) => a !== undefined);
    const settling = now - this.#lastMoveMs < Math.min(this.#cooldownMs, SETTLE_MS);
    const current = evaluatePlacement(models, this.#placementDevices(), assignment);
    if (settling || (measured.length > 0 && measured.length === this.#models.size && measured.every((a) => a >= MEETING))) {
      return { moves: [], scoreBefore: current.score, scoreAfter: current.score };
    }
    // Moves are made only to relieve a device in trouble: one where a model misses its SLOs on
    // its recent requests (or, before any finished, is predicted to). One at a time: the next
    // re-plan waits to see what it did instead of stacking moves on predictions.
    const relieve = new Set<string>();
    // How busy each device is: as measured, or as predicted where its queue says more (a burst
    // just arrived shows in the rates before it shows in the busy share).
    const pressure = new Map(current.devices.map((d) => [d.id, Math.max(d.utilization, busy.devices.get(d.id) ?? 0)]));
    for (const r of current.replicas) {
      const seen = this.#models.get(r.model)?.stats.recentAttainment;
      if ((seen ?? r.attainment) < MEETING) relieve.add(r.device);
    }
    const { moves, before, after } = improvePlacement(models, this.#placementDevices(), assignment, { frozen, relieve: { troubled: relieve, busy: pressure }, maxMoves: 1 });
    const applied: PlacementMove[] = [];
    const start = performance.now();
    for (const move of moves) {
      if (!this.#isOpen()) break;
      const g = this.#models.get(move.model);
      if (g === undefined || g.state !== 'ready') continue;
      if (await this.#track(this.#migrate(g, move))) applied.push(move);
    }
    if (applied.length > 0) {
      this.#lastMoveMs = performance.now();
      this.placed('replan', undefined, applied, performance.now() - start);
    }
    return { moves: applied, scoreBefore: before.score, scoreAfter: after.score };
  }

  /**
   * One move, live: a new replica is attached from the host weights (no file read) and serves;
   * the old one stops taking requests and hands every request it holds to it in arrival order
   * (queued ones as they are, running ones preempted there and resumed here by recompute), and is
   * freed. Returns whether it happened.
   */
  async #migrate(g: ModelGroup, move: PlacementMove): Promise<boolean> {
    g.lastMoveMs = performance.now();
    let fresh: Replica | undefined;
    if (move.kind !== 'remove') {
      const d = this.#devices.find((x) => x.id === move.to)!;
      const a = await attachReplica(g, d, this.#factory);
      if (!this.#isOpen() || g.state !== 'ready') {
        freeReplica(a.replica);
        return false;
      }
      fresh = a.replica;
      // A kind's cost stays the model that has learnt from traffic, not the new replica's warm-up.
      if (!g.costs.has(d.kind)) g.costs.set(d.kind, fresh.served.latency);
      d.scheduler.add(fresh.served);
      g.replicas.push(fresh);
    }
    if (move.kind === 'add') return true;
    const old = g.replicas.find((r) => r.device.id === move.from && r.state === 'serving');
    if (old === undefined) return fresh !== undefined;
    old.state = 'draining';
    const to = fresh ?? g.route(1);
    // Every request moves: the running ones once the old replica's step in flight has returned
    // (its blocks and sampler state go; the new replica recomputes their KV and resumes their
    // sampler), so the old device is relieved at once instead of after its longest request.
    // Paused, the old replica's lane starts no step meanwhile.
    old.served.paused = true;
    await old.device.scheduler.quiesce(old.served);
    for (const seq of old.served.detachAll(performance.now())) to.served.adopt(seq, performance.now());
    old.served.paused = false;
    to.device.scheduler.notify();
    while (old.served.hasWork) await Promise.all([...old.served.waiting, ...old.served.running].map((s) => s.run.result));
    await old.device.scheduler.quiesce(old.served);
    const at = g.replicas.indexOf(old);
    // An unload during the drain has freed it already.
    if (at < 0) return false;
    g.replicas.splice(at, 1);
    freeReplica(old);
    return true;
  }

}

/** The planner's view of a model: its measured rate, lengths and costs. */
function placementModel(g: ModelGroup, nowMs: number): PlacementModel {
  const limits = g.settings.limits;
  // What finished requests generated; before any, what arrivals asked for (maxTokens, an upper
  // bound); before any arrival, a quarter of the context each way, at most 64 tokens.
  const seen = g.stats.typicalLengths();
  const asked = g.requested.weight > 0 ? { promptTokens: g.requested.promptTokens / g.requested.weight, outputTokens: g.requested.outputTokens / g.requested.weight } : undefined;
  const guess = Math.max(1, Math.min(64, Math.floor(limits.maxContext / 4)));
  const promptTokens = seen?.promptTokens ?? asked?.promptTokens ?? guess;
  const outputTokens = Math.max(1, seen?.outputTokens ?? asked?.outputTokens ?? guess);
  const fp = g.footprint!;
  const anyCost = g.costs.values().next().value!;
  const latency = (kind: string): MeasuredLatencyModel => g.costs.get(kind) ?? anyCost;
  return {
    id: g.id,
    rate: g.rate.rate(nowMs).ewmaPerSecond,
    promptTokens,
    outputTokens,
    ...(g.settings.slo.ttftMs === undefined ? {} : { ttftMs: g.settings.slo.ttftMs }),
    weightBytes: g.model.weightBytes,
    kvBytesPerToken: fp.kvBytesPerToken,
    kvFloorBytes: fp.reserveBytes,
    maxBatch: limits.maxBatch,
    ...(g.pinned === undefined ? {} : { device: g.pinned }),
    ...(g.fixedReplicas === undefined ? {} : { replicas: g.fixedReplicas }),
    latency,
    // Loading a replica, then draining the old one's requests (one typical request's decode).
    moveCostS: (g.loadMs + outputTokens * anyCost.decodeMs(1, promptTokens + outputTokens / 2)) / 1000,
  };
}

