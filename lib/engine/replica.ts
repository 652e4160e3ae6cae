/**
 * Making and freeing a replica: a model's executor on one device (its KV registered in the
 * device's pool, threads of its own where the device shares in space), warmed up and timed, so
 * its latency model starts from this device's numbers. Loading a replica reads no file: the host
 * weights are the group's, shared by every replica.
 * @module
 */
import { EngineError, ModelError } from '../errors.js';
import type { KvFormat } from '../kv-pool.js';
import type { LocalPolicy } from '../scheduler/local/types.js';
import { MeasuredLatencyModel } from '../scheduler/measured-latency.js';
import { createThreadPool } from '../thread-pool.js';
import type { Device } from './device.js';
import { Executor } from './executor.js';
import { blockManagerFor, type KvMemoryOptions, poolForModel, releasePartition } from './kv-memory.js';
import type { ModelGroup, Replica } from './model-group.js';
import { ServedModel } from './served-model.js';
import { warmUp } from './warm-up.js';

/** How the engine makes replicas. */
export interface ReplicaFactory {
  readonly policy: LocalPolicy;
  /** The KV pool kind and its sizes. */
  readonly kv: KvMemoryOptions;
}

/** What a replica holds in its device's KV memory, for placement. */
export interface ReplicaFootprint {
  readonly kvFormat: KvFormat;
  readonly kvBytesPerToken: number;
  readonly tokensPerBlock: number;
  readonly reserveBytes: number;
}

/**
 * Attaches `group`'s model to `device` and warms it up; rejects with EngineError/KvError when the
 * device cannot hold it, ModelError when its warm-up step fails. Frees everything it took on failure.
 */
export async function attachReplica(group: ModelGroup, device: Device, factory: ReplicaFactory): Promise<{ replica: Replica; footprint: ReplicaFootprint; ms: number }> {
  const start = performance.now();
  const id = group.id;
  const undo: (() => void)[] = [];
  try {
    const pool = poolForModel(device, id, factory.kv, undo);
    // Space sharing on the CPU: a pool of the model's own, so its steps run beside the others'.
    const ownThreads = device.threadPool === undefined && device.memory === 'host' ? createThreadPool(device.threads) : undefined;
    if (ownThreads !== undefined) undo.push(() => ownThreads.dispose());
    const { limits, kvReserveTokens } = group.settings;
    const executor = Executor.attach(group.model, pool, {
      name: id,
      kvFormat: group.model.precision.kv,
      threads: device.threads,
      threadPool: device.threadPool ?? ownThreads,
      ownsThreadPool: ownThreads !== undefined,
      ...(device.slab === undefined ? {} : { reserve: { tokens: kvReserveTokens ?? limits.maxContext, maxBytes: 0.25 * device.slabBytes } }),
    });
    undo.push(() => executor.dispose());
    // Attach caps the reserve at a quarter of the slab; a reserve asked for explicitly is not cut silently.
    const reserveCap = executor.reserveBlocks * executor.tokensPerBlock;
    if (device.slab !== undefined && kvReserveTokens !== undefined && kvReserveTokens > reserveCap) {
      throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `model "${id}": kvReserveTokens = ${kvReserveTokens}, but at most ${reserveCap} tokens (a quarter of the ${device.id} slab of ${device.slabBytes} bytes) can be reserved for one model; raise slabBytes or lower kvReserveTokens`);
    }
    let measured;
    try {
      measured = await warmUp(executor, limits.maxContext, 0);
    } catch (err) {
      // A model that loads but cannot run a step (a context of 1-2 tokens, broken weights).
      throw new ModelError('ERR_MODEL_LOAD', `${group.model.source}: the warm-up step failed, so the model cannot be served: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    const served = new ServedModel({
      id,
      model: group.model,
      tokenizer: group.tokenizer,
      slo: group.settings.slo,
      limits,
      dropLate: group.settings.dropLate,
      chatTemplate: group.settings.chatTemplate,
      blocks: blockManagerFor(device, id, executor, factory.kv, undo),
      executor,
      latency: new MeasuredLatencyModel({ prior: measured }),
      policy: factory.policy,
      stats: group.stats,
    });
    const footprint: ReplicaFootprint = {
      kvFormat: executor.kvFormat,
      kvBytesPerToken: executor.kvBytesPerToken,
      tokensPerBlock: executor.tokensPerBlock,
      reserveBytes: executor.reserveBlocks * executor.tokensPerBlock * executor.kvBytesPerToken,
    };
    return { replica: { served, device, state: 'serving' }, footprint, ms: performance.now() - start };
  } catch (err) {
    for (const release of undo.reverse()) release();
    throw err;
  }
}

/** Frees a replica that has no step in flight and holds no request: its executor, KV registration and partition. */
export function freeReplica(r: Replica): void {
  r.device.scheduler.remove(r.served);
  r.served.close();
  releasePartition(r.device, r.served.id);
}
