/**
 * The devices of an Engine: opening them (the CPU, or a CUDA device the addon can serve on), the
 * KV memory and scheduler each owns, how its co-located models share it, and its stats.
 * @module
 */
import { availableParallelism, totalmem } from 'node:os';

import { devices as listDevices } from '../devices.js';
import { EngineError } from '../errors.js';
import { KvPool, type KvFormat, type KvPoolStats } from '../kv-pool.js';
import { createThreadPool, type NativeThreadPool } from '../thread-pool.js';
import { kvPoolsOf, type KvPoolKind, sharedPoolFor } from './kv-memory.js';
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
  /**
   * Devices of one kind run a model equally fast, so one measurement serves them all: `cpu×T`
   * (T threads) or the GPU's name.
   */
  readonly kind: string;
  /** Where its KV memory lives: 'host' for the CPU, the device id for a GPU. */
  readonly memory: 'host' | `cuda:${number}`;
  /** Bytes the weights of the models placed on it may take (what placement checks weights against). */
  readonly memoryBytes: number;
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

/** One device of {@link EngineOptions.devices}, with its own settings. */
export interface DeviceOptions {
  /** `'cpu'` (the whole CPU), `'cpu:N'` (a partition of its cores) or `'cuda:N'`. */
  readonly id: string;
  /** CPU: worker threads (default: the cores split evenly between the CPU devices). */
  readonly threads?: number;
  /** Bytes of its KV Slab; default the engine's `slabBytes`. */
  readonly slabBytes?: number;
  /**
   * Bytes the weights placed on it may take. Default: the host memory split evenly between the
   * CPU devices (each counts the weights of the models it serves, as a GPU would hold a copy);
   * on a GPU its memory less the slab, less a tenth for activations.
   */
  readonly memoryBytes?: number;
}

/** The CUDA devices the addon can serve on, or why there are none. */
async function cudaDevices(): Promise<{ ids: string[]; reason: string; names: Map<string, { name: string; memoryBytes: number }> }> {
  const report = await listDevices();
  return { ids: report.cuda.map((d) => d.id), reason: report.cudaStatus.reason ?? 'none found', names: new Map(report.cuda.map((d) => [d.id, { name: d.name, memoryBytes: d.memoryBytes }])) };
}

const invalid = (message: string): EngineError => new EngineError('ERR_ENGINE_INVALID_REQUEST', message);

/** The device list as objects, checked for form and duplicates. */
function normalise(wanted: 'auto' | 'cpu' | readonly (string | DeviceOptions)[]): DeviceOptions[] {
  const list = wanted === 'auto' || wanted === 'cpu' ? ['cpu'] : wanted;
  if (!Array.isArray(list) || list.length === 0) throw invalid(`devices = ${JSON.stringify(wanted)}: expected 'auto', 'cpu' or a list of device ids`);
  const out: DeviceOptions[] = [];
  for (const [i, entry] of (list as readonly unknown[]).entries()) {
    const d = typeof entry === 'string' ? { id: entry } : entry;
    if (typeof d !== 'object' || d === null || typeof (d as DeviceOptions).id !== 'string') throw invalid(`devices[${i}] = ${JSON.stringify(entry)}: expected a device id or { id, threads?, slabBytes?, memoryBytes? }`);
    const o = d as DeviceOptions;
    if (!/^(cpu(:\d+)?|cuda:\d+)$/.test(o.id)) throw new EngineError('ERR_ENGINE_DEVICE', `device ${JSON.stringify(o.id)}: expected 'cpu', 'cpu:N' or 'cuda:N'`);
    if (out.some((p) => p.id === o.id)) continue;
    out.push(o);
  }
  const cpus = out.filter((d) => d.id.startsWith('cpu'));
  if (cpus.some((d) => d.id === 'cpu') && cpus.length > 1) throw invalid(`devices: 'cpu' is the whole CPU and cannot be listed beside partitions ${cpus.filter((d) => d.id !== 'cpu').map((d) => d.id).join(', ')}`);
  return out;
}

/**
 * Opens the devices `wanted` names ('auto' and 'cpu': the whole CPU; otherwise ids or device
 * options: 'cpu', 'cpu:N' partitions of the cores, each with its own threads, slab and scheduler,
 * or 'cuda:N'). Throws EngineError naming the bad value or why a GPU cannot be used.
 */
export async function openDevices(
  wanted: 'auto' | 'cpu' | readonly (string | DeviceOptions)[],
  o: { policy: string; kvPool: KvPoolKind; slabBytes: number; threads: number | undefined; sharing: 'time' | 'space' },
): Promise<Device[]> {
  const list = normalise(wanted);
  if (o.sharing !== 'time' && o.sharing !== 'space') throw invalid(`sharing = ${JSON.stringify(o.sharing)}: expected 'time' or 'space'`);
  const cores = availableParallelism();
  const cpuParts = list.filter((d) => d.id.startsWith('cpu:'));
  if (cpuParts.length > 0 && o.sharing === 'space') throw invalid(`sharing 'space' applies to the whole CPU ('cpu'); CPU partitions (${cpuParts.map((d) => d.id).join(', ')}) already run beside each other`);
  const split = Math.max(1, Math.floor(cores / Math.max(1, cpuParts.length)));
  const threadsOf = (d: DeviceOptions): number => d.threads ?? (d.id === 'cpu' ? (o.threads ?? (o.sharing === 'space' ? 1 : cores)) : (o.threads ?? split));
  for (const d of list) {
    if (d.threads !== undefined && (!Number.isInteger(d.threads) || d.threads < 1 || d.threads > cores)) throw invalid(`devices: ${d.id}.threads = ${JSON.stringify(d.threads)}: expected an integer from 1 to ${cores} (the cores this process may use)`);
    for (const k of ['slabBytes', 'memoryBytes'] as const) {
      const v = d[k];
      if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < (k === 'slabBytes' ? 4 * 2 ** 20 : 0) || v > 2 ** 48)) throw invalid(`devices: ${d.id}.${k} = ${JSON.stringify(v)}: expected a byte count${k === 'slabBytes' ? ' of at least 4 MiB' : ''}`);
    }
  }
  const partThreads = cpuParts.reduce((a, d) => a + threadsOf(d), 0);
  if (partThreads > cores) throw invalid(`devices: the CPU partitions ${cpuParts.map((d) => `${d.id} (${threadsOf(d)})`).join(', ')} take ${partThreads} threads, more than the ${cores} cores this process may use`);
  const cpuCount = list.filter((d) => d.id.startsWith('cpu')).length;
  const gpus = list.some((d) => d.id.startsWith('cuda:')) ? await cudaDevices() : undefined;
  const devices: Device[] = [];
  try {
    for (const d of list) {
      const id = d.id;
      const slabBytes = d.slabBytes ?? o.slabBytes;
      const isCpu = id.startsWith('cpu');
      let gpu: { name: string; memoryBytes: number } | undefined;
      if (!isCpu) {
        gpu = gpus!.names.get(id);
        if (gpu === undefined) {
          throw new EngineError('ERR_ENGINE_DEVICE', `device ${JSON.stringify(id)}: ${gpus!.ids.length > 0 ? `not found (this machine has ${gpus!.ids.join(', ')})` : `no CUDA device is usable: ${gpus!.reason}`}`);
        }
      }
      const sharing = id === 'cpu' ? o.sharing : isCpu ? 'time' : 'space';
      const threads = threadsOf(d);
      // The KV Slab lives where the device computes: one cudaMalloc on a GPU, host memory on the CPU.
      const memory = isCpu ? 'host' : (id as `cuda:${number}`);
      const memoryBytes = d.memoryBytes ?? (isCpu ? Math.floor(totalmem() / cpuCount) : Math.max(0, Math.floor(0.9 * gpu!.memoryBytes) - slabBytes));
      const slab = sharedPoolFor(id, o.kvPool, slabBytes, memory);
      devices.push({
        id,
        kind: isCpu ? `cpu×${threads}` : gpu!.name,
        memory,
        memoryBytes,
        scheduler: new LocalScheduler(id, { concurrent: sharing === 'space' }),
        slab,
        partitions: new Map(),
        slabBytes,
        threads,
        sharing,
        threadPool: isCpu && sharing === 'time' ? createThreadPool(threads) : undefined,
      });
    }
  } catch (err) {
    for (const d of devices) closeDevice(d);
    throw err;
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
  const pools = kvPoolsOf(d);
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
