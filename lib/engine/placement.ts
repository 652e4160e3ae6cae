/**
 * The Engine's global scheduler: which devices serve which models, decided from costs measured on
 * this machine (each model's latency model on each device kind) and the rates measured online.
 * A pure function of its inputs, as the offline planner in `scheduler/global.ts` is; it differs
 * from that one where the engine knows more: exact weight and KV bytes, the model's own latency
 * model instead of H100 profiles, and the request lengths its traffic actually has.
 *
 * A plan is scored by its predicted SLO goodput: output tokens per second of requests that meet
 * their TTFT SLO. Its models' steps share a device: a replica of rate λ whose request takes S ms
 * of device time (its prefill, and its share of batched decode steps at the batch its load
 * settles at) loads it by λ·S. A new request waits for the prefills queued ahead of it, which run
 * in the time decoding leaves free: an M/M/1 queue whose tail P(W > t) = ρ·exp(−(1−ρ)·t / S)
 * gives the share of requests within the SLO. So co-location costs more the busier the
 * neighbours, a hot model and a crowded device repel, and a tight SLO counts for more than a
 * loose one. KV memory scales a device's goodput down when the
 * sequences its load keeps in flight need more than its slab (the marginal memory efficiency of
 * the paper: low-precision KV carries more goodput per byte). Weights and KV reserves are hard
 * limits; a model that fits no device is a failed placement naming each device's constraint.
 *
 * Rules, as a reviewer of the reference asked: one replica of every model before any extra, no
 * two replicas of one model on one device, a re-plan moves only when the gain over a horizon
 * pays the move's cost (load and drain time) and beats a hysteresis, at most one move per model
 * per re-plan, and a model just moved cools down before it may move again, so noise in the
 * measured rates cannot make it oscillate.
 * @module
 */
import type { LatencyModel } from '../scheduler/latency-model.js';

/** A model as the planner sees it. */
export interface PlacementModel {
  readonly id: string;
  /** Requests per second. */
  readonly rate: number;
  /** Typical prompt and output lengths of its requests, tokens. */
  readonly promptTokens: number;
  readonly outputTokens: number;
  readonly ttftMs?: number;
  /** Bytes of its weights on each device that serves it. */
  readonly weightBytes: number;
  readonly kvBytesPerToken: number;
  /** KV bytes reserved for it on each device that serves it (its slab reserve). */
  readonly kvFloorBytes: number;
  readonly maxBatch: number;
  /** Only this device may serve it. */
  readonly device?: string;
  /** Exactly this many replicas (default: the planner chooses). */
  readonly replicas?: number;
  /** Its latency model on devices of `kind`. */
  latency(kind: string): LatencyModel;
  /** Seconds a move of it costs: loading it elsewhere plus draining the old replica. */
  readonly moveCostS: number;
  /**
   * Device time its requests really take ÷ what its latency model predicts (default 1): set by
   * the re-planner from each replica's measured busy share, so a plan is scored at the load the
   * model is seen to put on a device, not only at the load predicted for it.
   */
  readonly loadScale?: number;
}

/** A device as the planner sees it. */
export interface PlacementDevice {
  readonly id: string;
  readonly kind: string;
  /** Bytes the weights of its models may take. */
  readonly memoryBytes: number;
  /** Its KV memory. */
  readonly kvBytes: number;
}

/** Model id → the devices of its replicas. */
export type Assignment = ReadonlyMap<string, readonly string[]>;

/** One replica under a plan. */
export interface ReplicaDecision {
  readonly model: string;
  readonly device: string;
  /** Its share of the model's rate, requests per second. */
  readonly rate: number;
  /** Predicted TTFT of a typical request at its device's load, ms (Infinity when overloaded). */
  readonly ttftMs: number;
  /** Predicted share of its requests meeting the TTFT SLO. */
  readonly attainment: number;
  /** Predicted share of the device's time its requests take. */
  readonly load: number;
  /** Predicted SLO goodput, output tokens per second. */
  readonly goodput: number;
  /** Goodput per MiB of KV its requests keep in flight: the marginal memory efficiency. */
  readonly goodputPerKvMiB: number;
  readonly reason: string;
}

/** One device under a plan. */
export interface DeviceLoad {
  readonly id: string;
  readonly models: readonly string[];
  readonly weightBytes: number;
  readonly memoryBytes: number;
  readonly kvFloorBytes: number;
  /** KV its models' requests keep in flight on average. */
  readonly kvDemandBytes: number;
  readonly kvBytes: number;
  /** Share of its time the requests routed to it take. */
  readonly utilization: number;
}

/** A plan scored. */
export interface PlanEvaluation {
  /** Predicted SLO goodput of every model, output tokens per second (less a small imbalance term). */
  readonly score: number;
  readonly replicas: readonly ReplicaDecision[];
  readonly devices: readonly DeviceLoad[];
}

/** A change of placement. */
export type PlacementMove =
  | { readonly kind: 'move'; readonly model: string; readonly from: string; readonly to: string }
  | { readonly kind: 'add'; readonly model: string; readonly to: string }
  | { readonly kind: 'remove'; readonly model: string; readonly from: string };

/** Why a model fits no device: each device's failed constraint. */
export class PlacementFailure {
  constructor(
    readonly model: string,
    readonly reasons: readonly { readonly device: string; readonly constraint: 'memory' | 'kv' | 'pinned' | 'replicas'; readonly detail: string }[],
  ) {}

  get message(): string {
    return `model "${this.model}" fits no device: ${this.reasons.map((r) => `${r.device}: ${r.detail}`).join('; ')}`;
  }
}

const MiB = 2 ** 20;

/** Device ms one request of `m` takes on `kind` when its decodes run `batch` at a time, and its batch-1 prefill. */
function serviceMs(m: PlacementModel, kind: string, batch: number): { service: number; prefill: number } {
  const lat = m.latency(kind);
  const scale = m.loadScale ?? 1;
  const prefill = scale * lat.prefillMs(1, m.promptTokens);
  const ctx = m.promptTokens + m.outputTokens / 2;
  return { service: prefill + (scale * m.outputTokens * lat.decodeMs(batch, ctx)) / batch, prefill };
}

/** Most of a device's time the planner counts on: the rest absorbs bursts and what it cannot see. */
const TARGET_UTILIZATION = 0.9;

/**
 * The decode batch each replica on one device settles at. Little's law gives the sequences
 * decoding at once at light load (the arrivals during one request's decode); continuous batching
 * lets a queue build until the batch is large enough for the device to keep up, so while the
 * device would be busier than {@link TARGET_UTILIZATION}, every batch grows (to its maxBatch).
 */
function settledBatches(parts: readonly { m: PlacementModel; rate: number }[], kind: string): number[] {
  const batches = parts.map(({ m, rate }) => {
    const alone = (m.loadScale ?? 1) * m.latency(kind).decodeMs(1, m.promptTokens + m.outputTokens / 2);
    return Math.max(1, Math.min(m.maxBatch, (rate * m.outputTokens * alone) / 1000));
  });
  const load = (): number => parts.reduce((a, { m, rate }, i) => a + (rate * serviceMs(m, kind, batches[i]!).service) / 1000, 0);
  for (let k = 0; k < 64 && load() > TARGET_UTILIZATION; k++) {
    let grew = false;
    parts.forEach(({ m }, i) => {
      const next = Math.min(m.maxBatch, batches[i]! * 1.25);
      if (next > batches[i]!) grew = true;
      batches[i] = next;
    });
    if (!grew) break;
  }
  return batches;
}

/** Scores an assignment; see the module comment. */
export function evaluatePlacement(models: readonly PlacementModel[], devices: readonly PlacementDevice[], assignment: Assignment): PlanEvaluation {
  const byId = new Map(models.map((m) => [m.id, m]));
  const replicas: ReplicaDecision[] = [];
  const loads: DeviceLoad[] = [];
  let score = 0;
  let offered = 0;
  let imbalance = 0;
  for (const m of models) offered += m.rate * m.outputTokens;
  for (const d of devices) {
    const here = [...assignment].filter(([, ds]) => ds.includes(d.id)).map(([id, ds]) => ({ m: byId.get(id)!, share: 1 / ds.length }));
    const rated = here.map(({ m, share }) => ({ m, rate: m.rate * share }));
    const batches = settledBatches(rated, d.kind);
    const parts = rated.map((p, i) => ({ ...p, batch: batches[i]!, ...serviceMs(p.m, d.kind, batches[i]!) }));
    const u = parts.reduce((a, p) => a + (p.rate * p.service) / 1000, 0);
    // Continuous batching: a new request waits for the prefills queued ahead of it, which get
    // the device between decode steps. So prefill is a queue served at the share of the device
    // decoding leaves free: load rho = prefill load / that share, service stretched by it.
    const uPrefill = parts.reduce((a, p) => a + (p.rate * p.prefill) / 1000, 0);
    const free = Math.max(1e-6, 1 - (u - uPrefill));
    const rho = uPrefill / free;
    const rateSum = parts.reduce((a, p) => a + p.rate, 0);
    const meanPrefill = rateSum > 0 ? parts.reduce((a, p) => a + p.rate * p.prefill, 0) / rateSum / free : 0;
    // The sequences decoding at once hold their prompt and half their output on average.
    const kvOf = (p: (typeof parts)[number]): number => p.batch * (p.m.promptTokens + p.m.outputTokens / 2) * p.m.kvBytesPerToken;
    const kvDemand = parts.reduce((a, p) => a + kvOf(p), 0);
    const kvFactor = kvDemand > d.kvBytes ? d.kvBytes / kvDemand : 1;
    const served = u > 1 ? 1 / u : 1;
    for (const p of parts) {
      const overloaded = u >= 1 || rho >= 1;
      const own = p.prefill / free;
      const slack = p.m.ttftMs === undefined ? Infinity : p.m.ttftMs - own;
      // M/M/1 waiting time: P(W > t) = rho·exp(−(1−rho)·t / service).
      const meet = slack === Infinity ? (overloaded ? 0 : 1) : slack <= 0 || overloaded ? 0 : 1 - rho * Math.exp((-(1 - rho) * slack) / Math.max(meanPrefill, 1e-6));
      const ttft = overloaded ? Infinity : own + (rho * meanPrefill) / (1 - rho);
      const goodput = p.rate * p.m.outputTokens * (p.m.ttftMs === undefined ? served : meet) * kvFactor;
      const kvInFlight = kvOf(p);
      score += goodput;
      replicas.push({
        model: p.m.id,
        device: d.id,
        rate: p.rate,
        ttftMs: ttft,
        attainment: (p.m.ttftMs === undefined ? served : meet) * kvFactor,
        load: (p.rate * p.service) / 1000,
        goodput,
        goodputPerKvMiB: goodput / Math.max(kvInFlight / MiB, 1e-9),
        reason:
          `${d.id} at utilization ${u.toFixed(2)}: predicted TTFT ${Number.isFinite(ttft) ? ttft.toFixed(1) : '∞'} ms` +
          (p.m.ttftMs === undefined ? ' (no TTFT SLO)' : ` against an SLO of ${p.m.ttftMs} ms`) +
          (kvFactor < 1 ? `; KV in flight ${(kvDemand / MiB).toFixed(1)} MiB exceeds the ${(d.kvBytes / MiB).toFixed(1)} MiB slab` : ''),
      });
    }
    imbalance += u * u;
    loads.push({
      id: d.id,
      models: parts.map((p) => p.m.id),
      weightBytes: parts.reduce((a, p) => a + p.m.weightBytes, 0),
      memoryBytes: d.memoryBytes,
      kvFloorBytes: parts.reduce((a, p) => a + p.m.kvFloorBytes, 0),
      kvDemandBytes: kvDemand,
      kvBytes: d.kvBytes,
      utilization: u,
    });
  }
  // Among plans of equal goodput, the balanced one leaves every device room for a burst.
  return { score: score - 1e-3 * offered * imbalance, replicas, devices: loads };
}

/** Why `m` cannot get a replica on `d` under `assignment`, or undefined when it can. */
function blocked(m: PlacementModel, d: PlacementDevice, models: readonly PlacementModel[], assignment: Assignment): PlacementFailure['reasons'][number] | undefined {
  if (m.device !== undefined && m.device !== d.id) return { device: d.id, constraint: 'pinned', detail: `the model is pinned to ${m.device}` };
  if (assignment.get(m.id)?.includes(d.id)) return { device: d.id, constraint: 'replicas', detail: 'it already serves a replica of the model' };
  let weights = m.weightBytes;
  let floors = m.kvFloorBytes;
  for (const o of models) {
    if (o.id === m.id || !assignment.get(o.id)?.includes(d.id)) continue;
    weights += o.weightBytes;
    floors += o.kvFloorBytes;
  }
  if (weights > d.memoryBytes) return { device: d.id, constraint: 'memory', detail: `weights ${mib(weights)} (this model's ${mib(m.weightBytes)} with those placed there) exceed its memoryBytes ${mib(d.memoryBytes)}` };
  if (floors > d.kvBytes) return { device: d.id, constraint: 'kv', detail: `KV reserves ${mib(floors)} (this model's ${mib(m.kvFloorBytes)} with those placed there) exceed its slab of ${mib(d.kvBytes)}` };
  return undefined;
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(bytes < 10 * MiB ? 2 : 0)} MiB`;
}

function withReplica(a: Assignment, model: string, device: string): Map<string, readonly string[]> {
  const next = new Map(a);
  next.set(model, [...(a.get(model) ?? []), device]);
  return next;
}

function apply(a: Assignment, move: PlacementMove): Map<string, readonly string[]> {
  const next = new Map(a);
  const ds = a.get(move.model) ?? [];
  if (move.kind === 'move') next.set(move.model, ds.map((d) => (d === move.from ? move.to : d)));
  else if (move.kind === 'add') next.set(move.model, [...ds, move.to]);
  else next.set(move.model, ds.filter((d) => d !== move.from));
  return next;
}

/**
 * Places a new model (`models` includes it; `current` places every other one): its replicas, one
 * at a time on the device that scores best, then extra replicas while each adds more than
 * `extraGain` of the score (unless its replica count is fixed). Other models stay where they are.
 */
export function placeModel(
  models: readonly PlacementModel[],
  devices: readonly PlacementDevice[],
  current: Assignment,
  modelId: string,
  options: { readonly extraGain?: number } = {},
): { assignment: Assignment; evaluation: PlanEvaluation } | PlacementFailure {
  const m = models.find((x) => x.id === modelId)!;
  let assignment: Assignment = new Map(current);
  const others = models.filter((x) => x.id !== modelId && current.has(x.id));
  const placing = [...others, m];
  const want = m.replicas ?? 1;
  for (let k = 0; k < want; k++) {
    let best: { a: Map<string, readonly string[]>; score: number } | undefined;
    const reasons: PlacementFailure['reasons'][number][] = [];
    for (const d of devices) {
      const why = blocked(m, d, placing, assignment);
      if (why !== undefined) {
        reasons.push(why);
        continue;
      }
      const a = withReplica(assignment, m.id, d.id);
      const score = evaluatePlacement(placing, devices, a).score;
      if (best === undefined || score > best.score) best = { a, score };
    }
    if (best === undefined) {
      if (k > 0) reasons.unshift({ device: '*', constraint: 'replicas', detail: `${k} of the ${want} replicas asked for could be placed` });
      return new PlacementFailure(m.id, reasons);
    }
    assignment = best.a;
  }
  if (m.replicas === undefined) {
    let evaluation = evaluatePlacement(placing, devices, assignment);
    for (;;) {
      let best: { a: Map<string, readonly string[]>; e: PlanEvaluation } | undefined;
      for (const d of devices) {
        if (blocked(m, d, placing, assignment) !== undefined) continue;
        const a = withReplica(assignment, m.id, d.id);
        const e = evaluatePlacement(placing, devices, a);
        if (best === undefined || e.score > best.e.score) best = { a, e };
      }
      if (best === undefined || best.e.score <= evaluation.score * (1 + (options.extraGain ?? 0.05))) break;
      assignment = best.a;
      evaluation = best.e;
    }
  }
  return { assignment, evaluation: evaluatePlacement(placing, devices, assignment) };
}

/** Options of {@link improvePlacement}. */
export interface ImproveOptions {
  /** Gain a move must bring, as a share of the moved model's offered tokens/s; default 0.1. */
  readonly hysteresis?: number;
  /** Seconds over which a move's gain must pay its cost; default 30. */
  readonly horizonS?: number;
  /** Most moves in one re-plan; default 4. */
  readonly maxMoves?: number;
  /** Models that may not change now (moved too recently: a cool-down against oscillation). */
  readonly frozen?: ReadonlySet<string>;
  /**
   * What is measured on the devices: those in trouble (models there missing their SLOs) and each
   * one's busy share. When given, only moves that take load off a troubled device and onto a
   * less busy one are made (a replica moved or removed from it, a replica added elsewhere for a
   * model served there). A plan that only predicts better is not worth a move's cost, and
   * moving load onto a device at least as busy cannot help.
   */
  readonly relieve?: { readonly troubled: ReadonlySet<string>; readonly busy: ReadonlyMap<string, number> };
}

/**
 * A re-plan: from `current`, the best single move (move a replica, add one, remove an extra) while
 * it gains more than the hysteresis (default 10 % of the moved model's offered tokens/s) and,
 * over the horizon, more goodput than the
 * move costs (the model's goodput over its move time); one move per model, none for `frozen` ones. Every model keeps at least one replica, a fixed replica
 * count stays fixed, a pinned model stays on its device.
 */
export function improvePlacement(
  models: readonly PlacementModel[],
  devices: readonly PlacementDevice[],
  current: Assignment,
  options: ImproveOptions = {},
): { assignment: Assignment; moves: PlacementMove[]; before: PlanEvaluation; after: PlanEvaluation } {
  const hysteresis = options.hysteresis ?? 0.1;
  const horizonS = options.horizonS ?? 30;
  const before = evaluatePlacement(models, devices, current);
  let assignment: Assignment = current;
  let evaluation = before;
  const moves: PlacementMove[] = [];
  const byId = new Map(models.map((m) => [m.id, m]));
  while (moves.length < (options.maxMoves ?? 4)) {
    let best: { move: PlacementMove; a: Assignment; e: PlanEvaluation; net: number } | undefined;
    for (const move of candidateMoves(models, devices, assignment)) {
      if (options.frozen?.has(move.model) === true || moves.some((m) => m.model === move.model)) continue;
      if (options.relieve !== undefined && !relieves(move, assignment, options.relieve)) continue;
      const a = apply(assignment, move);
      const e = evaluatePlacement(models, devices, a);
      const gain = e.score - evaluation.score;
      const m = byId.get(move.model)!;
      const ownGoodput = evaluation.replicas.filter((r) => r.model === m.id).reduce((x, r) => x + r.goodput, 0);
      // A removal drains too, and undoing it costs a load: every move pays.
      const cost = (m.moveCostS * Math.max(ownGoodput, m.rate * m.outputTokens)) / horizonS;
      const net = gain - cost;
      // Relative to what the moved model asks for: a move for a small model is judged by what it
      // does for that model, not drowned by a big neighbour's goodput.
      if (gain <= hysteresis * m.rate * m.outputTokens || net <= 0) continue;
      if (best === undefined || net > best.net) best = { move, a, e, net };
    }
    if (best === undefined) break;
    moves.push(best.move);
    assignment = best.a;
    evaluation = best.e;
  }
  return { assignment, moves, before, after: evaluation };
}

/** Busy share a move's destination must be below its source's by. */
const DOWNHILL = 0.1;

/** Whether `move` takes load off a troubled device onto a less busy one. */
function relieves(move: PlacementMove, a: Assignment, seen: NonNullable<ImproveOptions['relieve']>): boolean {
  const busy = (d: string): number => seen.busy.get(d) ?? 0;
  if (move.kind === 'remove') return seen.troubled.has(move.from);
  const from = move.kind === 'move' ? [move.from] : (a.get(move.model) ?? []);
  return from.some((d) => seen.troubled.has(d) && busy(move.to) < busy(d) - DOWNHILL);
}

function* candidateMoves(models: readonly PlacementModel[], devices: readonly PlacementDevice[], a: Assignment): Generator<PlacementMove> {
  for (const m of models) {
    const on = a.get(m.id) ?? [];
    if (m.device !== undefined) continue;
    for (const d of devices) {
      if (on.includes(d.id)) continue;
      const without = new Map(a);
      for (const from of on) {
        without.set(m.id, on.filter((x) => x !== from));
        if (blocked(m, d, models, without) === undefined) yield { kind: 'move', model: m.id, from, to: d.id };
      }
      if (m.replicas === undefined && blocked(m, d, models, a) === undefined) yield { kind: 'add', model: m.id, to: d.id };
    }
    if (m.replicas === undefined && on.length > 1) for (const from of on) yield { kind: 'remove', model: m.id, from };
  }
}
