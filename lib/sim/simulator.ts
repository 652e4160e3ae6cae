/**
 * The discrete-event simulator: every replica of a placement plan runs the local scheduler's
 * policy over a simulated device that charges cost-model time per iteration (slowed by the models
 * active beside it), with a KV policy accounting memory. Same seed and inputs, same result.
 *
 * Time only moves at events: an arrival, the end of a replica's iteration, or a retry of a replica
 * that could do nothing (short of memory). Decode-only stretches with nothing queued run as one
 * event of several iterations (see `maxFastForward`), which is exact for token counts and keeps
 * large scenarios fast.
 * @module
 */
import { profileModelName } from '../scheduler/catalog.js';
import type { CostEntry, CostModel } from '../scheduler/cost-model.js';
import { PlanError } from '../scheduler/errors.js';
import type { StepDemand } from '../scheduler/interference.js';
import { iterationMs, OnlineLatencyModel, type IterationShape, type LatencyModel, type ProfileLatencyModel } from '../scheduler/latency-model.js';
import { blocksFor, type LocalPolicy, type ModelSnapshot, type RunningSequence, type WaitingRequest } from '../scheduler/local/types.js';
import type { DeviceSpec, ModelSpec, PlacementPlan } from '../scheduler/types.js';
import { EventHeap } from './heap.js';
import { makeAccount, type KvAccount, type KvAccountOptions, type KvPolicyName } from './kv/index.js';
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
 * `hostToDeviceBytesPerS`), requests queueing meanwhile, so the migration costs drain + load. Unmoved replicas carry on. A device's KV is sized for the tighter
 * of the two plans over the whole run (the simulator's accounts are not resized mid-run).
 */
export interface SimReplan {
  readonly atMs: number;
  readonly plan: PlacementPlan;
  /** Default 25 GB/s: pinned host-to-device copies over PCIe 5.0 x16 reach about half its 64 GB/s. */
  readonly hostToDeviceBytesPerS?: number;
}

/** One replica started by a re-placement. */
export interface SimMigration {
  readonly model: string;
  readonly replica: number;
  readonly devices: readonly string[];
  /** When the model's old replicas had drained. */
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

interface Seq {
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

interface Device {
  readonly account: KvAccount;
  active: number;
  /** Demand of the step each replica is running on it now. */
  readonly steps: Map<number, StepDemand>;
}

interface Replica {
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
  work?: { prefill: { seq: Seq; tokens: number }[]; decode: Seq[]; steps: number; shape: IterationShape; ms: number } | undefined;
}

type SimEvent = { kind: 'end'; replica: Replica } | { kind: 'wake'; replica: Replica } | { kind: 'replan' };

const POLL_MS = 5;

/** Runs one simulation. */
export function simulate(config: SimConfig): SimResult {
  const { costModel, system } = config;
  const plan = system.plan;
  const maxBatchTokens = config.maxBatchTokens ?? 2048;
  const maxFF = Math.max(1, config.maxFastForward ?? 32);
  const window = config.snapshotWindow ?? 256;
  const specs = new Map(config.models.map((m) => [m.id, m]));

  // Devices and their KV accounts.
  const after = config.replan?.plan;
  const planDevices = new Map(plan.devices.map((d) => [d.id, d]));
  const afterDevices = new Map((after?.devices ?? []).map((d) => [d.id, d]));
  const devices = new Map<string, Device>();
  for (const d of config.devices) {
    const pd = planDevices.get(d.id);
    if (pd === undefined) throw new PlanError('ERR_SIM_INPUT', `plan ${plan.policy}`, 'devices', `device "${d.id}" is not in the plan`);
    const kvBytes = Math.min(pd.kvBytes, afterDevices.get(d.id)?.kvBytes ?? pd.kvBytes);
    const blocks = [...plan.placements, ...(after?.placements ?? [])]
      .filter((p) => p.devices.includes(d.id))
      .map((p) => {
        const m = specs.get(p.model)!;
        const e = costModel.entry(m.family, m.precision, p.tp, m.id);
        return (e.tokensPerBlock * e.kvBytesPerToken) / p.tp;
      });
    devices.set(d.id, { account: makeAccount(system.kv, kvBytes, blocks, config.kvOptions), active: 0, steps: new Map() });
  }

  // Replicas.
  const replicas: Replica[] = [];
  const byModel = new Map<string, Replica[]>();
  const addReplica = (p: PlacementPlan['placements'][number], list: Map<string, Replica[]>, fresh: boolean): Replica => {
    const model = specs.get(p.model);
    if (model === undefined) throw new PlanError('ERR_SIM_INPUT', `plan ${plan.policy}`, 'placements', `model "${p.model}" is not in the models list`);
    const entry = costModel.entry(model.family, model.precision, p.tp, model.id);
    const devs = p.devices.map((id) => devices.get(id)!);
    const blockBytes = (entry.tokensPerBlock * entry.kvBytesPerToken) / p.tp;
    // A replica a re-placement starts holds no reserve before it exists.
    const slots = devs.map((d) =>
      d.account.addModel({ key: `${p.model}#${p.replica}${fresh ? "'" : ''}`, blockBytes, layers: entry.shape.layers, reserveBytes: fresh ? 0 : p.reserveBytes, rate: p.rate, tokensPerBlock: entry.tokensPerBlock } as never),
    );
    const r: Replica = {
      index: replicas.length,
      model,
      entry,
      sloMs: p.sloMs,
      maxBatch: Math.max(1, p.maxBatch),
      minBatch: p.minBatch,
      devices: devs,
      slots,
      latency: system.latency === 'online' ? new OnlineLatencyModel(entry.latency) : entry.latency,
      ttftPerTokenMs: ttftPerTokenMs(costModel, entry),
      queue: [],
      head: 0,
      gone: new Set(),
      queued: 0,
      running: [],
      busy: false,
      active: false,
      wakePending: false,
      readyAtMs: fresh ? Infinity : 0,
      retiring: false,
    };
    replicas.push(r);
    if (system.splitPrefillDecode === true) {
      // The decode job: same devices and KV slots, its own steps; it takes no arrivals.
      const d: Replica = { ...r, index: replicas.length, queue: [], gone: new Set(), running: [], prefillLane: r };
      r.decodeLane = d;
      replicas.push(d);
    }
    let l = list.get(model.id);
    if (l === undefined) list.set(model.id, (l = []));
    l.push(r);
    return r;
  };
  const wake = (r: Replica, now: number): void => {
    if (r.wakePending) return;
    r.wakePending = true;
    heap.push(now, { kind: 'wake', replica: r });
  };
  const placementKey = (p: { model: string; replica: number; devices: readonly string[] }): string => `${p.model}#${p.replica}@${p.devices.join('+')}`;
  const oldByKey = new Map(plan.placements.map((p) => [placementKey(p), addReplica(p, byModel, false)]));
  // The new plan's replicas: unmoved ones are the same replicas, moved or new ones start later.
  const byModelAfter = new Map<string, Replica[]>();
  const fresh: Replica[] = [];
  for (const p of after?.placements ?? []) {
    const same = oldByKey.get(placementKey(p));
    if (same !== undefined) {
      oldByKey.delete(placementKey(p));
      let l = byModelAfter.get(p.model);
      if (l === undefined) byModelAfter.set(p.model, (l = []));
      l.push(same);
    } else fresh.push(addReplica(p, byModelAfter, true));
  }
  const retiring = after === undefined ? [] : [...oldByKey.values()];
  for (const d of devices.values()) d.account.seal();
  const migrations: SimMigration[] = [];
  const hostToDevice = config.replan?.hostToDeviceBytesPerS ?? 25e9;
  const readyModels = new Set<string>();
  // A moved model's new replicas start once its old replicas hold nothing and weights are loaded.
  const checkDrained = (model: string, now: number): void => {
    if (readyModels.has(model) || retiring.some((r) => r.model.id === model && (r.queued > 0 || r.running.length > 0 || r.busy))) return;
    readyModels.add(model);
    for (const r of fresh) {
      if (r.model.id !== model) continue;
      r.readyAtMs = now + ((r.entry.weightBytes / r.entry.tp) / hostToDevice) * 1000;
      migrations.push({ model, replica: r.index, devices: r.devices.map((d) => [...devices].find(([, x]) => x === d)![0]), drainedAtMs: now, readyAtMs: r.readyAtMs });
      heap.push(r.readyAtMs, { kind: 'wake', replica: r });
      r.wakePending = true;
    }
  };

  const outcomes = new Map<number, { seq: Seq; model: string; sloMs: number; tpotSloMs: number | undefined; state: RequestOutcome['state'] }>();
  const heap = new EventHeap<SimEvent>();
  let preemptions = 0;
  let iterations = 0;
  let extrapolated = 0;
  const workInterference = (config.interference ?? 'work') === 'work';
  const lastArrival = config.arrivals.at(-1)?.arrivalMs ?? 0;
  const stopMs = lastArrival + (config.drainMs ?? 60_000);

  // Next arrival time per model, for fast-forward bounds.
  const arrivalTimes = new Map<string, number[]>();
  for (const a of config.arrivals) {
    let l = arrivalTimes.get(a.model);
    if (l === undefined) arrivalTimes.set(a.model, (l = []));
    l.push(a.arrivalMs);
  }
  const arrivalCursor = new Map<string, number>();
  const nextArrivalOf = (model: string, now: number): number => {
    const l = arrivalTimes.get(model) ?? [];
    let i = arrivalCursor.get(model) ?? 0;
    while (i < l.length && l[i]! <= now) i++;
    arrivalCursor.set(model, i);
    return l[i] ?? Infinity;
  };

  const setActive = (r: Replica, on: boolean): void => {
    if (r.active === on) return;
    r.active = on;
    for (const d of r.devices) d.active += on ? 1 : -1;
  };
  const freeBlocks = (r: Replica): number => Math.min(...r.devices.map((d, i) => d.account.available(r.slots[i]!)));
  const grow = (r: Replica, s: Seq, blocks: number): boolean => {
    if (blocks <= s.blocks) return true;
    // All or nothing over the TP group: check every device first.
    for (let i = 0; i < r.devices.length; i++) if (r.devices[i]!.account.available(r.slots[i]!) < blocks - s.blocks) return false;
    for (let i = 0; i < r.devices.length; i++) r.devices[i]!.account.grow(r.slots[i]!, s.id, blocks);
    s.blocks = blocks;
    return true;
  };
  const release = (r: Replica, s: Seq): void => {
    for (let i = 0; i < r.devices.length; i++) r.devices[i]!.account.release(r.slots[i]!, s.id);
    s.blocks = 0;
  };
  const waitingWindow = (r: Replica): Seq[] => {
    while (r.head < r.queue.length && r.gone.has(r.queue[r.head]!.id)) r.gone.delete(r.queue[r.head++]!.id);
    if (r.head > 4096 && r.head * 2 > r.queue.length) {
      r.queue.splice(0, r.head);
      r.head = 0;
    }
    const out: Seq[] = [];
    for (let i = r.head; i < r.queue.length && out.length < window; i++) if (!r.gone.has(r.queue[i]!.id)) out.push(r.queue[i]!);
    return out;
  };

  const start = (r: Replica, now: number): void => {
    if (r.busy || now > stopMs || now < r.readyAtMs) return;
    if (r.queued === 0 && r.running.length === 0) {
      setActive(r, false);
      if (r.retiring) checkDrained(r.model.id, now);
      return;
    }
    const tpb = r.entry.tokensPerBlock;
    const waiting = waitingWindow(r);
    const byId = new Map<number, Seq>();
    for (const s of waiting) byId.set(s.id, s);
    for (const s of r.running) byId.set(s.id, s);

    // Fast path: nothing waits and everything decodes; several identical decode steps at once.
    let work: Replica['work'];
    const allDecoding = r.running.every((s) => s.computedTokens >= s.targetTokens);
    if (r.queued === 0 && allDecoding && r.running.length > 0 && maxFF > 1) work = fastForward(r, now);
    if (work === undefined) {
      const snapshot: ModelSnapshot = {
        nowMs: now,
        waiting: waiting as readonly WaitingRequest[],
        running: r.running as readonly RunningSequence[],
        kv: { freeBlocks: freeBlocks(r), tokensPerBlock: tpb },
        // Split jobs share the engine's batch cap: the prefill job admits only what the decode job leaves.
        limits: { maxBatch: r.decodeLane === undefined ? r.maxBatch : Math.max(0, r.maxBatch - r.decodeLane.running.length), maxBatchTokens, minBatch: r.minBatch },
        slo: { ttftMs: r.sloMs, ...(r.model.slo?.tpotMs !== undefined && { tpotMs: r.model.slo.tpotMs }) },
        latency: r.latency,
        ttftPerTokenMs: r.ttftPerTokenMs,
      };
      const d = system.policy(snapshot);
      for (const id of d.drop) {
        const s = byId.get(id);
        if (s === undefined || r.gone.has(id)) continue;
        r.gone.add(id);
        r.queued--;
        outcomes.get(id)!.state = 'dropped';
      }
      for (const id of d.admit) {
        const s = byId.get(id);
        if (s === undefined || r.gone.has(id)) continue;
        r.gone.add(id);
        r.queued--;
        r.running.push(s);
        outcomes.get(id)!.state = 'running';
      }
      for (const id of d.preempt) {
        const s = byId.get(id);
        if (s === undefined || s.blocks === 0) continue;
        release(r, s);
        s.targetTokens = s.started ? s.promptTokens + s.decodedTokens - 1 : s.promptTokens;
        s.computedTokens = 0;
        preemptions++;
      }
      if (r.prefillLane !== undefined) {
        // A preempted sequence must be prefilled again: back to the prefill job.
        const back = r.running.filter((x) => x.computedTokens < x.targetTokens);
        if (back.length > 0) {
          r.running = r.running.filter((x) => x.computedTokens >= x.targetTokens);
          r.prefillLane.running.push(...back);
          wake(r.prefillLane, now);
        }
      }
      const prefill: { seq: Seq; tokens: number }[] = [];
      for (const c of r.prefillLane !== undefined ? [] : d.prefill) {
        const s = byId.get(c.id);
        if (s === undefined || s.computedTokens >= s.targetTokens) continue;
        let tokens = Math.min(c.tokens, s.targetTokens - s.computedTokens);
        while (tokens > 0 && !grow(r, s, blocksFor(s.computedTokens + tokens, tpb))) tokens = Math.min(tokens - 1, s.blocks * tpb + freeBlocks(r) * tpb - s.computedTokens);
        if (tokens > 0) prefill.push({ seq: s, tokens });
      }
      const decode: Seq[] = [];
      for (const id of r.decodeLane !== undefined ? [] : d.decode) {
        const s = byId.get(id);
        if (s === undefined || s.computedTokens < s.targetTokens || s.blocks === 0) continue;
        if (grow(r, s, blocksFor(s.computedTokens + 1, tpb))) decode.push(s);
        else {
          // The policy promised memory it did not have: evict this one, as vLLM would.
          release(r, s);
          s.targetTokens = s.promptTokens + s.decodedTokens - 1;
          s.computedTokens = 0;
          preemptions++;
        }
      }
      if (prefill.length === 0 && decode.length === 0) {
        setActive(r, r.running.length > 0);
        if (!r.wakePending && (r.queued > 0 || r.running.length > 0)) {
          r.wakePending = true;
          heap.push(now + POLL_MS, { kind: 'wake', replica: r });
        }
        return;
      }
      const prefillTokens = prefill.reduce((a, p) => a + p.tokens, 0);
      const shape: IterationShape = {
        prefillSeqs: prefill.length,
        prefillTokens,
        decodeSeqs: decode.length,
        decodeContext: decode.length > 0 ? decode.reduce((a, s) => a + s.computedTokens, 0) / decode.length : 0,
      };
      work = { prefill, decode, steps: 1, shape, ms: 0 };
    }
    setActive(r, true);
    const solo = iterationMs(r.entry.latency, work.shape);
    const prefillMs = work.shape.prefillSeqs > 0 ? r.entry.latency.prefillMs(work.shape.prefillSeqs, work.shape.prefillTokens) : 0;
    let slow: number;
    if (workInterference) {
      const demand = costModel.stepDemand(r.entry, work.shape, solo);
      slow = 1;
      for (const d of r.devices) {
        const others = [...d.steps].filter(([i]) => i !== r.index).map(([, x]) => x);
        slow = Math.max(slow, costModel.contendedSlowdown(demand, others));
        d.steps.set(r.index, demand);
      }
    } else {
      const k = Math.max(...r.devices.map((d) => d.active));
      slow = costModel.colocationSlowdown(k, solo > 0 ? Math.min(1, prefillMs / solo) : 0);
    }
    if (outsideProfile(r.entry.latency, work.shape)) extrapolated += work.steps;
    let overhead = 0;
    for (let i = 0; i < r.devices.length; i++) overhead += r.devices[i]!.account.takeOverheadMs(r.slots[i]!);
    work.ms = solo * slow * work.steps + overhead;
    r.work = work;
    r.busy = true;
    iterations += work.steps;
    heap.push(now + work.ms, { kind: 'end', replica: r });
  };

  // Decode-only steps until the next arrival, the first finish, or the block budget ends them.
  const fastForward = (r: Replica, now: number): Replica['work'] => {
    const tpb = r.entry.tokensPerBlock;
    let steps = maxFF;
    for (const s of r.running) steps = Math.min(steps, s.outputTokens - s.decodedTokens);
    const ctx = r.running.reduce((a, s) => a + s.computedTokens, 0) / r.running.length;
    const shape: IterationShape = { prefillSeqs: 0, prefillTokens: 0, decodeSeqs: r.running.length, decodeContext: ctx + steps / 2 };
    const stepMs = iterationMs(r.entry.latency, shape) * costModel.colocationSlowdown(Math.max(...r.devices.map((d) => d.active), 1), 0);
    const next = nextArrivalOf(r.model.id, now);
    steps = Math.min(steps, Math.max(1, Math.floor((next - now) / stepMs)));
    if (steps <= 1) return undefined;
    const extra = r.running.reduce((a, s) => a + blocksFor(s.computedTokens + steps, tpb) - s.blocks, 0);
    if (extra > freeBlocks(r)) return undefined;
    for (const s of r.running) grow(r, s, blocksFor(s.computedTokens + steps, tpb));
    return { prefill: [], decode: [...r.running], steps, shape, ms: 0 };
  };

  const finishIteration = (r: Replica, now: number): void => {
    const w = r.work!;
    r.work = undefined;
    r.busy = false;
    for (const d of r.devices) d.steps.delete(r.index);
    r.latency.observe({ ...w.shape, measuredMs: w.ms / w.steps });
    const done: Seq[] = [];
    for (const { seq, tokens } of w.prefill) {
      if (seq.blocks === 0) continue;
      seq.computedTokens += tokens;
      if (seq.computedTokens >= seq.targetTokens && !seq.started) {
        seq.started = true;
        seq.firstTokenMs = now;
        seq.decodedTokens = 1;
        if (seq.decodedTokens >= seq.outputTokens) done.push(seq);
      }
    }
    for (const seq of w.decode) {
      if (seq.blocks === 0 || seq.computedTokens < seq.targetTokens) continue;
      seq.computedTokens += w.steps;
      seq.decodedTokens += w.steps;
      if (seq.decodedTokens >= seq.outputTokens) done.push(seq);
    }
    if (r.decodeLane !== undefined) {
      // Sequences past their first token leave the prefill job for the decode job.
      const ids = new Set(done.map((s) => s.id));
      const moving = r.running.filter((s) => s.started && !ids.has(s.id) && s.computedTokens >= s.targetTokens);
      if (moving.length > 0) {
        const m = new Set(moving.map((s) => s.id));
        r.running = r.running.filter((s) => !m.has(s.id));
        r.decodeLane.running.push(...moving);
        if (!r.decodeLane.busy) start(r.decodeLane, now);
      }
    }
    if (done.length > 0) {
      const ids = new Set(done.map((s) => s.id));
      r.running = r.running.filter((s) => !ids.has(s.id));
      for (const s of done) {
        release(r, s);
        s.finishMs = now;
        outcomes.get(s.id)!.state = 'finished';
      }
      // Memory came back: replicas on the same devices that were stuck can try again now.
      for (const other of replicas) if (other !== r && !other.busy && other.devices.some((d) => r.devices.includes(d))) start(other, now);
    }
    start(r, now);
  };

  if (config.replan !== undefined) heap.push(config.replan.atMs, { kind: 'replan' });

  // Main loop: arrivals merge with the event heap in time order (arrivals first on ties).
  let ai = 0;
  const arrivals = config.arrivals;
  for (;;) {
    const ta = ai < arrivals.length ? arrivals[ai]!.arrivalMs : Infinity;
    const te = heap.peekTime();
    if (ta === Infinity && te === Infinity) break;
    if (Math.min(ta, te) > stopMs) break;
    if (ta <= te) {
      const a = arrivals[ai++]!;
      const spec = specs.get(a.model);
      const list = (after !== undefined && a.arrivalMs >= config.replan!.atMs ? byModelAfter : byModel).get(a.model);
      const slo = list?.[0]?.sloMs ?? spec?.slo?.ttftMs ?? 0;
      const tpotSloMs = spec?.slo?.tpotMs;
      const seq: Seq = {
        id: a.id,
        arrivalMs: a.arrivalMs,
        deadlineMs: a.arrivalMs + slo,
        priority: spec?.priority ?? 0,
        promptTokens: a.promptTokens,
        outputTokens: a.outputTokens,
        decodedTokens: 0,
        computedTokens: 0,
        targetTokens: a.promptTokens,
        blocks: 0,
        started: false,
        firstTokenMs: NaN,
        finishMs: NaN,
      };
      if (list === undefined || list.length === 0) {
        outcomes.set(a.id, { seq, model: a.model, sloMs: slo, tpotSloMs, state: 'dropped' });
        continue;
      }
      outcomes.set(a.id, { seq, model: a.model, sloMs: slo, tpotSloMs, state: 'queued' });
      // Join the replica with the least outstanding work.
      let best = list[0]!;
      for (const r of list) if (r.queued + r.running.length < best.queued + best.running.length) best = r;
      best.queue.push(seq);
      best.queued++;
      start(best, a.arrivalMs);
    } else {
      const { time, item } = heap.pop()!;
      if (item.kind === 'end') finishIteration(item.replica, time);
      else if (item.kind === 'replan') {
        for (const r of retiring) {
          r.retiring = true;
          // Requests not yet started hold no KV: they move to the new plan's replicas of the model
          // at once; only the running ones drain where they are.
          const to = byModelAfter.get(r.model.id);
          if (to === undefined || to.length === 0) continue;
          for (const seq of waitingWindow(r).length > 0 ? r.queue.slice(r.head).filter((q) => !r.gone.has(q.id)) : []) {
            r.gone.add(seq.id);
            r.queued--;
            let best = to[0]!;
            for (const x of to) if (x.queued + x.running.length < best.queued + best.running.length) best = x;
            best.queue.push(seq);
            best.queued++;
            start(best, time);
          }
        }
        for (const m of new Set(fresh.map((r) => r.model.id))) checkDrained(m, time);
        for (const r of retiring) if (!r.busy) start(r, time);
      } else {
        item.replica.wakePending = false;
        start(item.replica, time);
      }
    }
  }
  return { ...summarize(system.name, outcomes, preemptions, iterations, extrapolated), migrations };
}

/** Whether an iteration's shape lies outside the profiled grid of `m` (see SimResult.extrapolatedShare). */
export function outsideProfile(m: ProfileLatencyModel, s: IterationShape): boolean {
  const maxBatch = m.batches.at(-1) ?? Infinity;
  const maxLen = m.lengths.at(-1) ?? Infinity;
  const maxCtx = m.contexts.at(-1) ?? Infinity;
  if (s.prefillSeqs > maxBatch || s.decodeSeqs > maxBatch) return true;
  if (s.prefillSeqs > 0 && s.prefillTokens / s.prefillSeqs > maxLen) return true;
  return s.decodeSeqs > 0 && s.decodeContext > maxCtx;
}

/** The reference's static figure: batch-1 profiled prefill ms per prompt token, averaged over lengths. */
export function ttftPerTokenMs(costModel: CostModel, entry: CostEntry): number {
  const name = profileModelName(entry.family, entry.precision.qformat);
  const rows = costModel.rows.filter((r) => r.model === name && r.qformat === entry.precision.qformat && r.tp === entry.tp && r.mpsPercentage === 100 && r.batchSize === 1);
  if (rows.length === 0) return entry.latency.prefillMs(1, 512) / 512;
  return (rows.reduce((a, r) => a + r.prefillTime / r.inputLen, 0) / rows.length) * 1000;
}

function summarize(
  system: string,
  outcomes: Map<number, { seq: Seq; model: string; sloMs: number; tpotSloMs: number | undefined; state: RequestOutcome['state'] }>,
  preemptions: number,
  iterations: number,
  extrapolated: number,
): Omit<SimResult, 'migrations'> {
  const list: RequestOutcome[] = [];
  const perModel: Record<string, { arrivals: number; attained: number; dropped: number; finished: number; sloMs: number }> = {};
  let attained = 0;
  let finished = 0;
  let dropped = 0;
  let tokens = 0;
  let lastFinish = 0;
  const ttfts: number[] = [];
  const tpots: number[] = [];
  for (const [id, o] of [...outcomes].sort((a, b) => a[0] - b[0])) {
    const s = o.seq;
    const pm = (perModel[o.model] ??= { arrivals: 0, attained: 0, dropped: 0, finished: 0, sloMs: o.sloMs });
    pm.arrivals++;
    const ttft = s.started ? s.firstTokenMs - s.arrivalMs : undefined;
    const tpot = o.state === 'finished' && s.outputTokens > 1 ? (s.finishMs - s.firstTokenMs) / (s.outputTokens - 1) : undefined;
    if (ttft !== undefined) ttfts.push(ttft);
    if (tpot !== undefined) tpots.push(tpot);
    // A TPOT SLO is judged on the whole output, so a request still running when the run stops misses it.
    const tpotMet = o.tpotSloMs === undefined || (o.state === 'finished' && (tpot === undefined || tpot <= o.tpotSloMs));
    const met = ttft !== undefined && ttft < o.sloMs && tpotMet;
    if (met) {
      attained++;
      pm.attained++;
    }
    if (o.state === 'dropped') {
      dropped++;
      pm.dropped++;
    }
    if (o.state === 'finished') {
      finished++;
      pm.finished++;
      tokens += s.outputTokens;
      lastFinish = Math.max(lastFinish, s.finishMs);
    }
    list.push({
      id,
      model: o.model,
      arrivalMs: s.arrivalMs,
      state: o.state,
      ...(ttft !== undefined && { ttftMs: ttft }),
      ...(tpot !== undefined && { tpotMs: tpot }),
      ...(o.state === 'finished' && { finishMs: s.finishMs }),
      outputTokens: s.outputTokens,
      sloMs: o.sloMs,
      attained: met,
      ...(o.tpotSloMs !== undefined && { tpotSloMs: o.tpotSloMs }),
    });
  }
  const n = outcomes.size;
  return {
    system,
    arrivals: n,
    finished,
    dropped,
    inFlight: n - finished - dropped,
    sloAttainment: n === 0 ? 1 : attained / n,
    tokenThroughput: lastFinish > 0 ? (tokens / lastFinish) * 1000 : 0,
    ttftP50Ms: quantile(ttfts, 0.5),
    ttftP99Ms: quantile(ttfts, 0.99),
    tpotP50Ms: quantile(tpots, 0.5),
    tpotP99Ms: quantile(tpots, 0.99),
    preemptions,
    iterations,
    extrapolatedShare: iterations > 0 ? extrapolated / iterations : 0,
    perModel,
    outcomes: list,
  };
}

/** The q-quantile (nearest rank) of `xs`; NaN when empty. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
}
