/**
 * The devices of an Engine: opening them (the CPU, or a CUDA device the addon can serve on), the
 * KV memory and scheduler each owns, how its co-located models share it, and its stats.
 * @module
 */
import { availableParallelism } from 'node:os';

import { devices as listDevices } from '../devices.js';
import { EngineError } from '../errors.js';
import { KvPool, type KvFormat, type KvPoolStats } from '../kv-pool.js';
import { createThreadPool, type NativeThreadPool } from '../thread-pool.js';
import { sharedPoolFor } from './kv-memory.js';
import { LocalScheduler } from './local-scheduler.js';

/** One device's part of the Engine's stats. */
export interface DeviceStats {
  readonly id: string;
  readonly kv: readonly KvPoolStats[];
  /** Bytes held per KV format across the device's pools. */
  readonly heldBytesByFormat: Readonly<Partial<Record<KvFormat, number>>>;
  readonly liveTokenBytesByFormat: Readonly<Partial<Record<KvFormat, number>>>;
  readonly slabBytes: number;
  /** How its models share it: steps taking turns ('time') or running at once ('space'). */
  readonly sharing: 'time' | 'space';
  /** The most steps of different models that were in flight at once. */
  readonly peakConcurrentSteps: number;
}

export interface Device {
  readonly id: string;
  /** Where its KV memory lives: 'host' for the CPU, the device id for a GPU. */
  readonly memory: 'host' | `cuda:${number}`;
  readonly scheduler: LocalScheduler;
  /** The shared KV Slab (fineserve, saab); undefined for static partitions. */
  readonly slab: KvPool | undefined;
  /** static-fcfs: each model's own pool. */
  readonly partitions: Map<string, KvPool>;
  readonly slabBytes: number;
  /** Threads of the shared pool (time sharing), or of each model's own pool (space sharing). */
  readonly threads: number;
  readonly sharing: 'time' | 'space';
  /** Time sharing on the CPU: one pool of worker threads shared by every model on the device. */
  readonly threadPool: NativeThreadPool | undefined;
}

/** The CUDA devices the addon can serve on, or why there are none. */
async function cudaDevices(): Promise<{ ids: string[]; reason: string }> {
  const report = await listDevices();
  return { ids: report.cuda.map((d) => d.id), reason: report.cudaStatus.reason ?? 'none found' };
}

/**
 * Opens the devices `wanted` names ('auto' and 'cpu': the CPU; otherwise ids, 'cpu' or 'cuda:N').
 * Throws EngineError naming the bad value or why a GPU cannot be used.
 */
export async function openDevices(
  wanted: 'auto' | 'cpu' | readonly string[],
  o: { policy: string; slabBytes: number; threads: number | undefined; sharing: 'time' | 'space' },
): Promise<Device[]> {
  const list = wanted === 'auto' || wanted === 'cpu' ? ['cpu'] : wanted;
  if (!Array.isArray(list) || list.length === 0) throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `devices = ${JSON.stringify(wanted)}: expected 'auto', 'cpu' or a list of device ids`);
  if (o.sharing !== 'time' && o.sharing !== 'space') throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `sharing = ${JSON.stringify(o.sharing)}: expected 'time' or 'space'`);
  const cores = availableParallelism();
  const devices: Device[] = [];
  const gpus = list.some((id) => id !== 'cpu') ? await cudaDevices() : undefined;
  for (const id of list) {
    if (devices.some((d) => d.id === id)) continue;
    if (id !== 'cpu') {
      if (!/^cuda:\d+$/.test(id)) throw new EngineError('ERR_ENGINE_DEVICE', `device ${JSON.stringify(id)}: expected 'cpu' or 'cuda:N'`);
      if (!gpus!.ids.includes(id)) {
        throw new EngineError('ERR_ENGINE_DEVICE', `device ${JSON.stringify(id)}: ${gpus!.ids.length > 0 ? `not found (this machine has ${gpus!.ids.join(', ')})` : `no CUDA device is usable: ${gpus!.reason}`}`);
      }
    }
    const sharing = id === 'cpu' ? o.sharing : 'space';
    const threads = o.threads ?? (sharing === 'space' ? 1 : cores);
    // The KV Slab lives where the device computes: one cudaMalloc on a GPU, host memory on the CPU.
    const memory = id === 'cpu' ? 'host' : (id as `cuda:${number}`);
    devices.push({
      id,
      memory,
      scheduler: new LocalScheduler(id, { concurrent: sharing === 'space' }),
      slab: o.policy === 'static-fcfs' ? undefined : sharedPoolFor(id, o.slabBytes, memory),
      partitions: new Map(),
      slabBytes: o.slabBytes,
      threads,
      sharing,
      threadPool: id === 'cpu' && sharing === 'time' ? createThreadPool(threads) : undefined,
    });
  }
  return devices;
}

/**
 * Space sharing on the CPU gives each model threads of its own: refuses (EngineError) the model
 * `id` that would make them more than the cores.
 */
export function checkOwnThreads(device: Device, id: string): void {
  if (device.memory !== 'host' || device.sharing !== 'space') return;
  const cores = availableParallelism();
  const threads = (device.scheduler.models.length + 1) * device.threads;
  if (threads > cores) {
    throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `model "${id}": sharing 'space' gives each model ${device.threads} thread(s) of its own, and ${device.scheduler.models.length + 1} models would need ${threads}, more than the ${cores} cores; use sharing 'time' or fewer threads`);
  }
}

/** Frees a device's KV memory and threads (its models already unloaded). */
export function closeDevice(d: Device): void {
  d.slab?.dispose();
  for (const p of d.partitions.values()) p.dispose();
  d.partitions.clear();
  d.threadPool?.dispose();
}

export function deviceStats(d: Device): DeviceStats {
  const pools = d.slab !== undefined ? [d.slab] : [...d.partitions.values()];
  const kv = pools.map((p) => p.stats());
  const held: Partial<Record<KvFormat, number>> = {};
  const live: Partial<Record<KvFormat, number>> = {};
  for (const s of kv) {
    for (const g of s.byGeometry) {
      held[g.geometry.format] = (held[g.geometry.format] ?? 0) + g.heldBytes;
      live[g.geometry.format] = (live[g.geometry.format] ?? 0) + g.liveTokenBytes;
    }
  }
  return {
    id: d.id,
    kv,
    heldBytesByFormat: held,
    liveTokenBytesByFormat: live,
    slabBytes: d.slabBytes,
    sharing: d.sharing,
    peakConcurrentSteps: d.scheduler.peakConcurrentSteps,
  };
}
