/**
 * Builds a run's state from its config: one device per GPU with the system's KV account, one
 * replica per placement (two jobs each under MuxServe's split), and, for a re-placement, the new
 * plan's replicas (unmoved ones shared with the old plan, moved ones starting later).
 * @module
 */
import { PlanError } from '../scheduler/errors.js';
import { OnlineLatencyModel } from '../scheduler/latency-model.js';
import type { PlacementPlan } from '../scheduler/types.js';
import { ADBS_ADAPT_MS, initQuotas } from './adbs.js';
import { EventHeap } from './heap.js';
import { makeAccount } from './kv/index.js';
import { ttftPerTokenMs } from './profile-bounds.js';
import type { SimConfig } from './sim-types.js';
import type { Device, Replica, SimContext, SimEvent } from './state.js';

type Placement = PlacementPlan['placements'][number];

const placementKey = (p: { model: string; replica: number; devices: readonly string[] }): string => `${p.model}#${p.replica}@${p.devices.join('+')}`;

/** The state of a run before its first event. */
export function setUp(config: SimConfig): SimContext {
  const { costModel, system } = config;
  const plan = system.plan;
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
    devices.set(d.id, { account: makeAccount(system.kv, kvBytes, blocks, config.kvOptions), active: 0, steps: new Map(), kvPlanned: pd.kvBytes, kvPool: kvBytes, weightsIn: 0, weightsOut: 0 });
  }

  // Replicas.
  const replicas: Replica[] = [];
  const rates = new Map<Replica, number>();
  const addReplica = (p: Placement, list: Map<string, Replica[]>, fresh: boolean): Replica => {
    const model = specs.get(p.model);
    if (model === undefined) throw new PlanError('ERR_SIM_INPUT', `plan ${plan.policy}`, 'placements', `model "${p.model}" is not in the models list`);
    const entry = costModel.entry(model.family, model.precision, p.tp, model.id);
    const devs = p.devices.map((id) => devices.get(id)!);
    const blockBytes = (entry.tokensPerBlock * entry.kvBytesPerToken) / p.tp;
    // A replica a re-placement starts holds no reserve before it exists.
    const slots = devs.map((d) =>
      d.account.addModel({ key: `${p.model}#${p.replica}${fresh ? "'" : ''}`, blockBytes, layers: entry.shape.layers, reserveBytes: fresh ? 0 : p.reserveBytes, ...(fresh && { pendingBytes: p.reserveBytes }), rate: p.rate, tokensPerBlock: entry.tokensPerBlock } as never),
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
    rates.set(r, p.rate);
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
  const byModel = new Map<string, Replica[]>();
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

  const lastArrival = config.arrivals.at(-1)?.arrivalMs ?? 0;
  const ctx: SimContext = {
    config,
    costModel,
    system,
    specs,
    maxBatchTokens: config.maxBatchTokens ?? 2048,
    maxFF: Math.max(1, config.maxFastForward ?? 32),
    window: config.snapshotWindow ?? 256,
    stopMs: lastArrival + (config.drainMs ?? 60_000),
    workInterference: (config.interference ?? 'work') === 'work',
    devices,
    replicas,
    byModel,
    byModelAfter,
    fresh,
    retiring,
    readyModels: new Set(),
    drainedModels: new Set(),
    migrations: [],
    hostToDeviceBytesPerS: config.replan?.hostToDeviceBytesPerS ?? 25e9,
    outcomes: new Map(),
    heap: new EventHeap<SimEvent>(),
    nextArrivalOf: arrivalClock(config),
    preemptions: 0,
    iterations: 0,
    extrapolated: 0,
  };
  if (system.adaptiveBatching === true) {
    if (system.splitPrefillDecode !== true) throw new PlanError('ERR_SIM_INPUT', `system ${system.name}`, 'adaptiveBatching', 'MuxServe\'s adaptive batch scheduling runs prefill and decode jobs: set splitPrefillDecode');
    initQuotas(ctx, rates);
    ctx.heap.push(ADBS_ADAPT_MS, { kind: 'adapt' });
  }
  return ctx;
}

/** Next arrival time per model after `now`; queried with non-decreasing `now` per model. */
function arrivalClock(config: SimConfig): (model: string, now: number) => number {
  const arrivalTimes = new Map<string, number[]>();
  for (const a of config.arrivals) {
    let l = arrivalTimes.get(a.model);
    if (l === undefined) arrivalTimes.set(a.model, (l = []));
    l.push(a.arrivalMs);
  }
  const arrivalCursor = new Map<string, number>();
  return (model, now) => {
    const l = arrivalTimes.get(model) ?? [];
    let i = arrivalCursor.get(model) ?? 0;
    while (i < l.length && l[i]! <= now) i++;
    arrivalCursor.set(model, i);
    return l[i] ?? Infinity;
  };
}
