/**
 * Bookkeeping shared by every placement policy: what each device holds as replicas are placed,
 * input validation, and turning the result into a {@link PlacementPlan}.
 * @module
 */
import type { CostEntry } from './cost-model.js';
import { PlanError, requirePositive } from './errors.js';
import type { DevicePlan, DeviceSpec, ModelSpec, Placement, PlacementPlan, PlanInput, Unplaced } from './types.js';

/** Share of device memory an engine may use (vLLM's default `gpu_memory_utilization`). */
export const USABLE_MEMORY_FRACTION = 0.9;

/**
 * KV every replica keeps at the least, in tokens: one full chunked-prefill batch (the reference
 * engine's 2048-token minimum reservation), so a replica can always run a step.
 */
export const MIN_KV_TOKENS = 2048;

/**
 * Share of a device's usable memory that stays KV whatever is placed on it: a plan that fills a
 * device with weights down to ~0 KV serves nothing there, so such a device takes no more replicas.
 */
export const DEVICE_KV_FLOOR_FRACTION = 0.1;

/** KV bytes per device a replica needs at the least ({@link MIN_KV_TOKENS} tokens). */
export function kvFloorBytes(entry: CostEntry): number {
  return (MIN_KV_TOKENS * entry.kvBytesPerToken) / entry.tp;
}

/**
 * Whether a device can take one more replica of `entry` and still keep every resident's KV floor
 * and the device's own ({@link DEVICE_KV_FLOOR_FRACTION}).
 */
export function keepsKvFloor(d: DeviceState, entry: CostEntry): boolean {
  const usable = d.spec.memoryBytes * USABLE_MEMORY_FRACTION;
  const kvLeft = d.free - staticBytesPerDevice(entry);
  const floors = d.residents.reduce((a, r) => a + kvFloorBytes(r.entry), kvFloorBytes(entry));
  return kvLeft >= Math.max(floors, DEVICE_KV_FLOOR_FRACTION * usable);
}

/** A replica placed so far, as a device sees it. */
export interface Resident {
  readonly model: string;
  readonly entry: CostEntry;
  readonly tp: number;
  readonly rate: number;
  readonly sloMs: number;
  readonly maxBatch: number;
  readonly minBatch: number;
}

/** One device while a plan is built. */
export interface DeviceState {
  readonly spec: DeviceSpec;
  readonly node: number;
  /** Memory not yet promised to weights and activations. */
  free: number;
  weightBytes: number;
  activationBytes: number;
  readonly residents: Resident[];
  /** Policy scratch: Prism's summed rate/SLO, MuxServe's compute load. */
  pressure: number;
}

/** Checks a plan input; throws `ERR_PLAN_INPUT` naming `models[i].field` or `devices[i].field`. */
export function validatePlanInput(input: PlanInput, source = 'plan input'): void {
  if (input.devices.length === 0) throw new PlanError('ERR_PLAN_INPUT', source, 'devices', 'no devices');
  if (input.models.length === 0) throw new PlanError('ERR_PLAN_INPUT', source, 'models', 'no models');
  const ids = new Set<string>();
  input.models.forEach((m, i) => {
    const where = `${source} models[${i}]`;
    if (typeof m.id !== 'string' || m.id === '') throw new PlanError('ERR_PLAN_INPUT', where, 'id', `must be a non-empty string, got ${JSON.stringify(m.id)}`);
    if (ids.has(m.id)) throw new PlanError('ERR_PLAN_INPUT', where, 'id', `duplicate model id "${m.id}"`);
    ids.add(m.id);
    requirePositive(where, 'rate', m.rate, true);
    if (m.slo !== undefined) requirePositive(where, 'slo.ttftMs', m.slo.ttftMs);
  });
  const devIds = new Set<string>();
  input.devices.forEach((d, i) => {
    const where = `${source} devices[${i}]`;
    if (typeof d.id !== 'string' || d.id === '') throw new PlanError('ERR_PLAN_INPUT', where, 'id', `must be a non-empty string, got ${JSON.stringify(d.id)}`);
    if (devIds.has(d.id)) throw new PlanError('ERR_PLAN_INPUT', where, 'id', `duplicate device id "${d.id}"`);
    devIds.add(d.id);
    requirePositive(where, 'memoryBytes', d.memoryBytes);
    if (d.speedClass !== undefined && d.speedClass !== 'h100') {
      throw new PlanError('ERR_PLAN_INPUT', where, 'speedClass', `only "h100" has a calibrated cost model, got "${d.speedClass}"`);
    }
  });
  if (input.sloScale !== undefined) requirePositive(source, 'sloScale', input.sloScale);
}

/** Fresh device states. */
export function initDevices(devices: readonly DeviceSpec[]): DeviceState[] {
  return devices.map((spec) => ({
    spec,
    node: spec.node ?? 0,
    free: spec.memoryBytes * USABLE_MEMORY_FRACTION,
    weightBytes: 0,
    activationBytes: 0,
    residents: [],
    pressure: 0,
  }));
}

/** Memory a replica takes on each device of its TP group before any KV. */
export function staticBytesPerDevice(entry: CostEntry): number {
  return (entry.weightBytes + entry.activationBytes) / entry.tp;
}

/** Records a replica on its devices. */
export function place(group: readonly DeviceState[], r: Resident): void {
  for (const d of group) {
    d.free -= staticBytesPerDevice(r.entry);
    d.weightBytes += r.entry.weightBytes / r.tp;
    d.activationBytes += r.entry.activationBytes / r.tp;
    d.residents.push(r);
  }
}

/** All k-subsets of `items`, in lexicographic order (deterministic). */
export function* combinations<T>(items: readonly T[], k: number, start = 0, prefix: T[] = []): Generator<T[]> {
  if (prefix.length === k) {
    yield [...prefix];
    return;
  }
  for (let i = start; i <= items.length - (k - prefix.length); i++) {
    prefix.push(items[i]!);
    yield* combinations(items, k, i + 1, prefix);
    prefix.pop();
  }
}

/** Devices grouped by node, in input order. */
export function byNode(devices: readonly DeviceState[]): DeviceState[][] {
  const nodes = new Map<number, DeviceState[]>();
  for (const d of devices) {
    let list = nodes.get(d.node);
    if (list === undefined) nodes.set(d.node, (list = []));
    list.push(d);
  }
  return [...nodes.keys()].sort((a, b) => a - b).map((n) => nodes.get(n)!);
}

/** Assembles the plan; KV per device is what weights and activations leave of usable memory. */
export function finishPlan(
  policy: string,
  models: readonly ModelSpec[],
  devices: readonly DeviceState[],
  placements: readonly Placement[],
  unplaced: readonly Unplaced[],
  score: number,
  kvLayout: PlacementPlan['kvLayout'],
  version = 1,
  underProvisioned: readonly Unplaced[] = [],
): PlacementPlan {
  const deviceTable: DevicePlan[] = devices.map((d) => ({
    id: d.spec.id,
    models: d.residents.map((r) => r.model),
    weightBytes: Math.round(d.weightBytes),
    activationBytes: Math.round(d.activationBytes),
    kvBytes: Math.max(0, Math.floor(d.spec.memoryBytes * USABLE_MEMORY_FRACTION - d.weightBytes - d.activationBytes)),
  }));
  return {
    policy,
    version,
    rates: Object.fromEntries(models.map((m) => [m.id, m.rate])),
    placements,
    devices: deviceTable,
    unplaced,
    feasible: unplaced.length === 0,
    ...(underProvisioned.length > 0 && { underProvisioned }),
    score,
    kvLayout,
  };
}
