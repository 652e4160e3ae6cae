/**
 * Where a served model's KV lives on its device, for each KV pool the engine can serve with
 * (`EngineOptions.kvPool`):
 * - `kv-slab`: the device's one shared pool (the KV Slab);
 * - `static`: a fixed partition of the device's KV memory per model (vLLM-style);
 * - `unified` / `paged`: the baselines MuxServe-style fixed blocks padded to the largest model's,
 *   and page-granular mapping on demand (kvcached-style). Their native pools keep accounting only
 *   (no memory), so each model's KV bytes live in a memory-backed pool of its own, sized past the
 *   budget so it never binds, and every allocation must also pass the policy's accounting pool of
 *   `slabBytes` (the "gate"): the gate decides what fits, exactly as the policy would.
 * The scheduler policy is unchanged by the choice: only what fits in memory changes.
 * @module
 */
import { EngineError } from '../errors.js';
import { KvPool, type KvPolicy } from '../kv-pool.js';
import { BlockManager, type StepChunk } from './block-manager.js';
import type { Device } from './device.js';
import type { Executor } from './executor.js';
import type { Sequence } from './sequence.js';

const MiB = 2 ** 20;

/** The KV pools an engine can serve with (see the module comment). */
export type KvPoolKind = KvPolicy;
export const KV_POOL_KINDS: readonly KvPoolKind[] = ['kv-slab', 'static', 'unified', 'paged'];

/** Sizes of the baseline pools (`EngineOptions.kvPoolOptions`). */
export interface KvPoolTuning {
  /**
   * unified: the one block size every model's blocks are padded to. Default: the block of the
   * first model loaded on the device (so load the largest first); a later model whose block is
   * larger is refused, naming this option.
   */
  readonly blockBytes?: number;
  /** paged: page size; default 2 MiB (scale it with a small slabBytes). */
  readonly pageBytes?: number;
  /** paged: modelled driver time of one page map or unmap, spent on the serving loop; default 10 µs. */
  readonly mapCostNs?: number;
}

/** The KV pool choice of an engine, passed to {@link poolForModel} and {@link blockManagerFor}. */
export interface KvMemoryOptions extends KvPoolTuning {
  readonly kind: KvPoolKind;
  /** static: the number of equal partitions the device's KV memory is cut into. */
  readonly partitions: number;
}

/** A device's accounting-only pool for `unified` / `paged`, and each model's id in it. */
interface Gate {
  readonly pool: KvPool;
  readonly models: Map<string, number>;
  /** paged: the modelled map time already spent on the serving loop, ns. */
  chargedNs: number;
}
const gates = new WeakMap<Device, Gate>();

/**
 * The shared KV pool of a device for `kv-slab` (undefined for the other kinds); a pool the
 * device cannot hold is an EngineError naming the option.
 */
export function sharedPoolFor(id: string, kind: KvPoolKind, slabBytes: number, memory: 'host' | `cuda:${number}`): KvPool | undefined {
  if (kind !== 'kv-slab') return undefined;
  const slab = slabSizeFor(slabBytes);
  try {
    return KvPool.create({ poolBytes: slabBytes, memory, ...(slab === undefined ? {} : { slabBytes: slab }) });
  } catch (err) {
    throw new EngineError('ERR_ENGINE_DEVICE', `slabBytes = ${slabBytes}: the KV Slab of ${id} cannot be allocated: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The slab size of every pool on a device of `kvBytes`: the KvPool default (2 to 64 MiB, about 256
 * slabs) from 512 MiB up; below, a thirty-second of the device's KV (64 KiB to 2 MiB), so a small
 * budget is still cut finely enough to share: 2 MiB slabs in a 16 MiB pool would be 8 slabs, half
 * of them taken by four models' reserves. Static partitions and the memory behind a gate use the
 * same size, so every pool kind holds blocks of the same tokens per block.
 *
 * The size follows the pool, not the models' block sizes (the reference's 2 x LCM of them): the
 * pool is cut when the device opens, before any model is known (models register one at a time,
 * and a native pool cannot be re-cut once an executor holds it), and an LCM of co-located block
 * sizes is unbounded anyway. Each model's block follows the slab instead
 * (`tokensPerBlockFor` in block-size.ts), the first model or one loaded later alike. On
 * bench:serve-memory's four models in 5 MiB (their capacities in tokens, summed) that holds 6,560
 * tokens in 128 KiB slabs; cutting for the first model's 16-token block (135,168 B) would hold
 * 6,384, and the best slab for all four known at once (174,720 B) 6,720, 2 % more.
 */
function slabSizeFor(kvBytes: number): number | undefined {
  if (kvBytes >= 512 * MiB) return undefined;
  return Math.min(2 * MiB, Math.max(2 ** 16, 2 ** Math.floor(Math.log2(kvBytes / 32))));
}

/** A memory-backed kv-slab pool of `bytes` for one model, cut like the device's shared one. */
function ownPool(device: Device, bytes: number): KvPool {
  const slab = slabSizeFor(device.slabBytes) ?? Math.min(64 * MiB, Math.max(2 * MiB, 2 ** Math.floor(Math.log2(device.slabBytes / 256))));
  // At least 8 slabs, whatever the partition count: a pool of one slab is all tail.
  return KvPool.create({ poolBytes: bytes, memory: device.memory, slabBytes: Math.min(slab, Math.max(2 ** 16, 2 ** Math.floor(Math.log2(bytes / 8)))) });
}

/**
 * The pool model `id`'s executor attaches to on `device`: the shared KV Slab, a new static
 * partition of 1 / `partitions` of the device's KV memory, or (unified, paged) a memory pool of its
 * own behind the device's gate; `undo` releases what this call took.
 */
export function poolForModel(device: Device, id: string, kv: KvMemoryOptions, undo: (() => void)[]): KvPool {
  if (device.slab !== undefined) return device.slab;
  let pool: KvPool;
  if (kv.kind === 'static') {
    const share = Math.floor(device.slabBytes / kv.partitions);
    const used = [...device.partitions.values()].reduce((a, p) => a + p.stats().poolBytes, 0);
    if (used + share > device.slabBytes) {
      throw new EngineError('ERR_ENGINE_KV_OUT_OF_MEMORY', `static KV partitions: the ${kv.partitions} partitions of ${device.id} are all taken; raise staticPartitions or unload a model`);
    }
    pool = ownPool(device, share);
  } else {
    // A quarter more than the gate's pool: slab tails never make the memory bind before the gate.
    pool = ownPool(device, Math.ceil(device.slabBytes * 1.25));
  }
  device.partitions.set(id, pool);
  undo.push(() => {
    device.partitions.delete(id);
    pool.dispose();
  });
  return pool;
}

function gateFor(device: Device, kv: KvMemoryOptions, firstBlockBytes: number): Gate {
  let gate = gates.get(device);
  if (gate === undefined) {
    const pool =
      kv.kind === 'unified'
        ? KvPool.create({ policy: 'unified', poolBytes: device.slabBytes, blockBytes: kv.blockBytes ?? firstBlockBytes })
        : KvPool.create({ policy: 'paged', poolBytes: device.slabBytes, ...(kv.pageBytes === undefined ? {} : { pageBytes: kv.pageBytes }), ...(kv.mapCostNs === undefined ? {} : { mapCostNs: kv.mapCostNs }) });
    gate = { pool, models: new Map(), chargedNs: 0 };
    gates.set(device, gate);
  }
  return gate;
}

/**
 * The BlockManager of a model whose executor is attached to `executor.pool`: a plain one, or for
 * `unified` / `paged` one that also allocates through the device's gate; `undo` releases the
 * model's place in the gate.
 */
export function blockManagerFor(device: Device, id: string, executor: Executor, kv: KvMemoryOptions, undo: (() => void)[]): BlockManager {
  if (kv.kind !== 'unified' && kv.kind !== 'paged') return new BlockManager(executor.pool, executor.kvModel, executor.tokensPerBlock);
  const blockBytes = executor.pool.layout(executor.kvModel).blockBytes;
  const gate = gateFor(device, kv, blockBytes);
  let gateModel: number;
  try {
    gateModel = gate.pool.addModel({ name: id, geometry: executor.geometry });
  } catch (err) {
    const why = kv.kind === 'unified' ? `; with kvPool 'unified' load the model with the largest KV block first, or set kvPoolOptions.blockBytes to at least ${blockBytes}` : '';
    throw new EngineError('ERR_ENGINE_INVALID_REQUEST', `model "${id}": its KV blocks (${blockBytes} bytes) do not fit the ${kv.kind} pool of ${device.id}: ${(err as Error).message}${why}`, { cause: err });
  }
  gate.models.set(id, gateModel);
  undo.push(() => releaseGate(device, id));
  return new GatedBlockManager(gate, gateModel, executor.pool, executor.kvModel, executor.tokensPerBlock);
}

function releaseGate(device: Device, id: string): void {
  const gate = gates.get(device);
  const model = gate?.models.get(id);
  if (gate === undefined || model === undefined) return;
  gate.models.delete(id);
  gate.pool.removeModel(model);
}

/** Frees model `id`'s own pool (static partition or memory behind a gate) and its place in the gate. */
export function releasePartition(device: Device, id: string): void {
  releaseGate(device, id);
  const partition = device.partitions.get(id);
  if (partition === undefined) return;
  device.partitions.delete(id);
  partition.dispose();
}

/** The pools whose accounting a device reports: its gate, its KV Slab, or its partitions. */
export function kvPoolsOf(device: Device): KvPool[] {
  const gate = gates.get(device);
  if (gate !== undefined) return [gate.pool];
  return device.slab !== undefined ? [device.slab] : [...device.partitions.values()];
}

/** Spins for `ns`: the modelled map cost is spent on the serving loop, where a driver call would be. */
function spend(ns: number): void {
  if (ns <= 0) return;
  const until = performance.now() + ns / 1e6;
  while (performance.now() < until);
}

/**
 * A BlockManager whose `pool` is the policy's accounting pool (what fits is what it grants) while
 * the block ids in the sequences' block tables come from the model's memory pool.
 */
class GatedBlockManager extends BlockManager {
  readonly #gate: Gate;
  readonly #memory: KvPool;
  readonly #memoryModel: number;
  /** Each running sequence's block ids in the gate, in table order. */
  readonly #gateIds = new Map<Sequence, number[]>();

  constructor(gate: Gate, gateModel: number, memory: KvPool, memoryModel: number, tokensPerBlock: number) {
    super(gate.pool, gateModel, tokensPerBlock);
    this.#gate = gate;
    this.#memory = memory;
    this.#memoryModel = memoryModel;
  }

  override available(): number {
    return Math.min(this.pool.availableBlocks(this.kvModel), this.#memory.availableBlocks(this.#memoryModel));
  }

  override allocate(chunks: readonly StepChunk[], liveTokens: number): StepChunk[] {
    const counts = chunks.map((c) => Math.max(0, this.blocksFor(c.seq.computed + c.n) - c.seq.blockTable.length));
    const gated = this.pool.step({ allocs: counts.map((count) => ({ model: this.kvModel, count })), liveTokens: [{ model: this.kvModel, tokens: liveTokens }] });
    const granted = counts.filter((_, i) => gated.allocs[i]!.ok);
    const backed = this.#memory.step({ allocs: granted.map((count) => ({ model: this.#memoryModel, count })), liveTokens: [{ model: this.#memoryModel, tokens: liveTokens }] });
    const ok: StepChunk[] = [];
    let k = 0;
    chunks.forEach((c, i) => {
      const g = gated.allocs[i]!;
      if (!g.ok) return;
      const m = backed.allocs[k++]!;
      if (!m.ok) {
        // The memory pool is sized past the gate's, so this is a slab tail at worst: give the grant back.
        if (g.blocks.length > 0) this.pool.free(this.kvModel, g.blocks);
        return;
      }
      const ids = this.#gateIds.get(c.seq) ?? [];
      for (const b of g.blocks) ids.push(b);
      this.#gateIds.set(c.seq, ids);
      for (const b of m.blocks) c.seq.blockTable.push(b);
      ok.push(c);
    });
    this.#chargeMaps();
    return ok;
  }

  override free(seq: Sequence): void {
    const ids = this.#gateIds.get(seq);
    if (ids !== undefined && ids.length > 0) this.pool.free(this.kvModel, ids);
    this.#gateIds.delete(seq);
    if (seq.blockTable.length > 0) this.#memory.free(this.#memoryModel, seq.blockTable);
    seq.blockTable.length = 0;
    this.#chargeMaps();
  }

  /** paged: spends the modelled cost of the page maps and unmaps since the last call. */
  #chargeMaps(): void {
    if (this.pool.policy !== 'paged') return;
    const total = this.pool.stats().mapCostNs;
    spend(total - this.#gate.chargedNs);
    this.#gate.chargedNs = total;
  }
}
