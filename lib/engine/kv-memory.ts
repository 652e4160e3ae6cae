/**
 * Where a served model's KV lives on its device: the device's one shared pool (the KV Slab), or,
 * for the static baseline, a fixed partition of the device's KV memory of its own.
 * @module
 */
import { EngineError } from '../errors.js';
import { KvPool } from '../kv-pool.js';
import type { Device } from './device.js';

const MiB = 2 ** 20;

/** The shared KV pool of a device; a pool the device cannot hold is an EngineError naming the option. */
export function sharedPoolFor(id: string, slabBytes: number, memory: 'host' | `cuda:${number}`): KvPool {
  try {
    return KvPool.create({ poolBytes: slabBytes, memory });
  } catch (err) {
    throw new EngineError('ERR_ENGINE_DEVICE', `slabBytes = ${slabBytes}: the KV Slab of ${id} cannot be allocated: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The pool model `id` gets on `device`: the shared one, or a new static partition of
 * 1 / `partitions` of the device's KV memory; `undo` releases what this call took.
 */
export function poolForModel(device: Device, id: string, partitions: number, undo: (() => void)[]): KvPool {
  if (device.slab !== undefined) return device.slab;
  const share = Math.floor(device.slabBytes / partitions);
  const used = [...device.partitions.values()].reduce((a, p) => a + p.stats().poolBytes, 0);
  if (used + share > device.slabBytes) {
    throw new EngineError('ERR_ENGINE_KV_OUT_OF_MEMORY', `static-fcfs: the ${partitions} KV partitions of ${device.id} are all taken; raise staticPartitions or unload a model`);
  }
  // 16+ slabs per partition keep its tail small; a partition holds one geometry, so more buy nothing.
  const partition = KvPool.create({ poolBytes: share, memory: device.memory, slabBytes: Math.min(64 * MiB, Math.max(2 ** 16, 2 ** Math.floor(Math.log2(share / 16)))) });
  device.partitions.set(id, partition);
  undo.push(() => {
    device.partitions.delete(id);
    partition.dispose();
  });
  return partition;
}

/** Frees model `id`'s static partition, if it has one. */
export function releasePartition(device: Device, id: string): void {
  const partition = device.partitions.get(id);
  if (partition === undefined) return;
  device.partitions.delete(id);
  partition.dispose();
}
