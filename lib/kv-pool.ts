/**
 * KV cache memory shared by co-located models: the KV Slab (FineServe's allocator) and, behind the
 * same interface, the baselines it is compared against. All bookkeeping runs in the native addon;
 * this file gives it types, validates arguments and turns native errors into {@link KvError}s.
 * @module
 */
import { codeOf, KvError, type KvErrorCode } from './errors.js';
import { loadNative } from './native/loader.js';

/** Element format of a KV cache. */
export type KvFormat = 'f32' | 'f16' | 'bf16' | 'fp8' | 'int8' | 'int4';

/** The KV block shape of one model. A block holds `tokensPerBlock` tokens of every layer, K and V. */
export interface KvGeometry {
  readonly tokensPerBlock: number;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly format: KvFormat;
  /** Scale bytes per token, per KV head, per K or V (e.g. 2 for one fp16 scale). Default 0. */
  readonly scaleBytes?: number;
}

/**
 * Bytes one token of a geometry takes in the cache (K and V of every layer and KV head, scales
 * included), before the layout's alignment padding.
 */
export function kvTokenBytes(g: Pick<KvGeometry, 'layers' | 'kvHeads' | 'headDim' | 'format' | 'scaleBytes'>): number {
  const bits = { f32: 32, f16: 16, bf16: 16, fp8: 8, int8: 8, int4: 4 }[g.format];
  return 2 * g.layers * g.kvHeads * ((g.headDim * bits) / 8 + (g.scaleBytes ?? 0));
}

/**
 * - `kv-slab`: FineServe's KV Slab: equal slabs, each cut into one model's blocks while it holds
 *   them, returned to everyone when empty.
 * - `static`: a fixed partition per model (one vLLM engine per model).
 * - `unified`: one block size for every model, padded to the largest (MuxServe-style).
 * - `paged`: page-granular on-demand mapping with a modelled per-map cost (kvcached/Prism-style);
 *   accounting only, its block ids are virtual.
 */
export type KvPolicy = 'kv-slab' | 'static' | 'unified' | 'paged';

/** Options of {@link KvPool.create}. */
export interface KvPoolOptions {
  /** Default `kv-slab`. */
  readonly policy?: KvPolicy;
  /** Size of the pool; at most 256 GiB. */
  readonly poolBytes: number;
  /** kv-slab: slab size, a multiple of 64; default a power of two from 2 to 64 MiB (~256 slabs). */
  readonly slabBytes?: number;
  /** kv-slab: largest share of a slab a geometry may leave unused at its end; default 0.125. */
  readonly maxTailFraction?: number;
  /**
   * kv-slab: where the pool's one allocation lives: `host` (the CPU backend), `cuda:N` (device
   * memory), or `none` (default): accounting only, for simulation and benchmarks.
   */
  readonly memory?: 'none' | 'host' | `cuda:${number}`;
  /** unified: the one block size every model's blocks are padded to (required there). */
  readonly blockBytes?: number;
  /** paged: page size; default 2 MiB. */
  readonly pageBytes?: number;
  /** paged: modelled driver time of one page map or unmap; default 10 µs. */
  readonly mapCostNs?: number;
}

/** Options of {@link KvPool.addModel}. */
export interface KvModelOptions {
  /** Unique within the pool. */
  readonly name: string;
  readonly geometry: KvGeometry;
  /** kv-slab: blocks this model can always get, whatever the others hold. */
  readonly reserveBlocks?: number;
  /** static: this model's fixed share of the pool (required there). */
  readonly partitionBytes?: number;
}

/** The result of an allocation: out of memory is `{ ok: false }`, never an exception. */
export type KvAllocResult =
  | { readonly ok: true; readonly blocks: Uint32Array; readonly available: number }
  | { readonly ok: false; readonly available: number };

/** One iteration's pool operations, applied in one native call. */
export interface KvStep {
  /** Applied first. */
  readonly frees?: readonly { readonly model: number; readonly blocks: Uint32Array | readonly number[] }[];
  /** Applied next, each all or nothing. */
  readonly allocs?: readonly { readonly model: number; readonly count: number }[];
  /** Applied last: tokens each model's live sequences now hold. */
  readonly liveTokens?: readonly { readonly model: number; readonly tokens: number }[];
}

/**
 * What {@link KvPool.compact} did: slabs it released, and the blocks it moved as
 * `[from0, to0, from1, to1, ...]`: replace each `from` id by its `to` id in the block tables.
 */
export interface KvCompaction {
  readonly released: number;
  readonly moves: Uint32Array;
}

/** Byte offsets inside one model's blocks (see cpp/core/kv/kv_geometry.h for the layout). */
export interface KvLayout {
  readonly geometry: Required<KvGeometry>;
  readonly rowBytes: number;
  readonly dataBytes: number;
  readonly scaleOffset: number;
  readonly regionBytes: number;
  readonly layerStride: number;
  readonly blockBytes: number;
  readonly tokenBytes: number;
}

/**
 * Memory accounting of one model. Exact:
 * `heldBytes = liveTokenBytes + internalBytes + externalBytes + tailBytes`.
 */
export interface KvModelStats {
  readonly id: number;
  readonly name: string;
  readonly geometry: Required<KvGeometry>;
  /** Block size as the policy stores it (padded in `unified`). */
  readonly blockBytes: number;
  readonly tokenBytes: number;
  readonly blocksPerSlab: number;
  readonly reserveBlocks: number;
  readonly liveBlocks: number;
  readonly liveTokens: number;
  /** Slabs (kv-slab) or pages (paged) held. */
  readonly slabsHeld: number;
  /** Memory no other model can use while this one holds it. */
  readonly heldBytes: number;
  /** Bytes holding live tokens. */
  readonly liveTokenBytes: number;
  /** Inside allocated blocks but not live tokens: unfilled slots and padding. */
  readonly internalBytes: number;
  /** Free blocks inside held memory, stranded for other models. */
  readonly externalBytes: number;
  /** Held memory too small for one more block. */
  readonly tailBytes: number;
  readonly peakLiveBlocks: number;
  readonly peakHeldBytes: number;
  readonly peakLiveTokenBytes: number;
  readonly allocCalls: number;
  readonly blocksAllocated: number;
  readonly freeCalls: number;
  readonly blocksFreed: number;
  readonly oomCount: number;
  /** Blocks moved by {@link KvPool.compact}. */
  readonly blocksMoved: number;
}

/** Sums over the models that share one KV geometry. */
export interface KvGeometryStats {
  readonly geometry: Required<KvGeometry>;
  readonly models: readonly string[];
  readonly heldBytes: number;
  readonly liveTokenBytes: number;
  readonly internalBytes: number;
  readonly externalBytes: number;
  readonly tailBytes: number;
}

/** Pool accounting. Exact: `poolBytes = freeBytes + unusableBytes + heldBytes`. */
export interface KvPoolStats {
  readonly policy: KvPolicy;
  readonly poolBytes: number;
  /** Slab (kv-slab), block (unified) or page (paged) size; 0 for static. */
  readonly slabBytes: number;
  readonly numSlabs: number;
  readonly freeSlabs: number;
  readonly freeBytes: number;
  /** The remainder of the pool no model can ever use. */
  readonly unusableBytes: number;
  readonly heldBytes: number;
  readonly liveTokenBytes: number;
  readonly internalBytes: number;
  readonly externalBytes: number;
  readonly tailBytes: number;
  readonly peakHeldBytes: number;
  readonly peakLiveTokenBytes: number;
  /** paged: page maps + unmaps, and their modelled cost. */
  readonly mapCalls: number;
  readonly mapCostNs: number;
  readonly models: readonly KvModelStats[];
  readonly byGeometry: readonly KvGeometryStats[];
}

interface NativeAlloc {
  ok: boolean;
  available: number;
  blocks?: Uint32Array;
}

interface NativeStep {
  ids: Uint32Array;
  starts: Uint32Array;
  ok: Uint8Array;
  available: Float64Array;
}

/** The addon's KvPool class (cpp/addon/kv_pool.cc). */
export interface NativeKvPool {
  addModel(options: KvModelOptions): number;
  removeModel(model: number): void;
  alloc(model: number, count: number): NativeAlloc;
  free(model: number, blocks: Uint32Array): void;
  setLiveTokens(model: number, tokens: number): void;
  availableBlocks(model: number): number;
  step(
    freeModels: Uint32Array,
    freeCounts: Uint32Array,
    freeIds: Uint32Array,
    allocModels: Uint32Array,
    allocCounts: Uint32Array,
    liveModels: Uint32Array,
    liveTokens: Float64Array,
  ): NativeStep;
  layout(model: number): KvLayout;
  blockOffset(model: number, block: number): number;
  compact(model: number, maxSlabs: number): { released: number; moves: Uint32Array };
  stats(): Omit<KvPoolStats, 'byGeometry'>;
}

export type NativeKvPoolConstructor = new (options: KvPoolOptions) => NativeKvPool;

const POLICIES: readonly KvPolicy[] = ['kv-slab', 'static', 'unified', 'paged'];

/** Runs a native call, turning its coded errors into KvError. */
function native<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    const code = codeOf(err);
    if (code?.startsWith('ERR_KV_')) throw new KvError(code as KvErrorCode, (err as Error).message);
    throw err;
  }
}

function count(name: string, value: number, max = 0xffffffff): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new KvError('ERR_KV_INVALID_ARGUMENT', `${name} = ${String(value)}: must be an integer from 0 to ${max}`);
  }
  return value;
}

function toIds(name: string, blocks: Uint32Array | readonly number[]): Uint32Array {
  if (blocks instanceof Uint32Array) return blocks;
  const ids = new Uint32Array(blocks.length);
  blocks.forEach((b, i) => {
    ids[i] = count(`${name}[${i}]`, b);
  });
  return ids;
}

function toAlloc(ok: boolean, available: number, blocks: Uint32Array | undefined): KvAllocResult {
  return ok && blocks !== undefined ? { ok: true, blocks, available } : { ok: false, available };
}

function geometryKey(g: Required<KvGeometry>): string {
  return `${g.format}/${g.tokensPerBlock}x${g.layers}x${g.kvHeads}x${g.headDim}+${g.scaleBytes}`;
}

function byGeometry(models: readonly KvModelStats[]): KvGeometryStats[] {
  const groups = new Map<string, KvGeometryStats>();
  for (const m of models) {
    const key = geometryKey(m.geometry);
    const g = groups.get(key);
    groups.set(key, {
      geometry: m.geometry,
      models: [...(g?.models ?? []), m.name],
      heldBytes: (g?.heldBytes ?? 0) + m.heldBytes,
      liveTokenBytes: (g?.liveTokenBytes ?? 0) + m.liveTokenBytes,
      internalBytes: (g?.internalBytes ?? 0) + m.internalBytes,
      externalBytes: (g?.externalBytes ?? 0) + m.externalBytes,
      tailBytes: (g?.tailBytes ?? 0) + m.tailBytes,
    });
  }
  return [...groups.values()];
}

/**
 * A KV memory pool for the models co-located on one device.
 *
 * ```ts
 * const slab = KvPool.create({ poolBytes: 8 * 2 ** 30 });
 * const m = slab.addModel({ name: 'llama-fp8', geometry: { tokensPerBlock: 16, layers: 32, kvHeads: 8, headDim: 128, format: 'fp8' } });
 * const r = slab.alloc(m, 4);              // { ok: true, blocks: Uint32Array(4) [...] }
 * slab.stats().models[0].liveBlocks;       // 4
 * ```
 */
export class KvPool {
  readonly policy: KvPolicy;
  readonly #native: NativeKvPool;

  private constructor(policy: KvPolicy, pool: NativeKvPool) {
    this.policy = policy;
    this.#native = pool;
  }

  /** Creates a pool; throws KvError (`ERR_KV_INVALID_ARGUMENT`) naming a bad option. */
  static create(options: KvPoolOptions): KvPool {
    const policy = options.policy ?? 'kv-slab';
    if (!POLICIES.includes(policy)) {
      throw new KvError('ERR_KV_INVALID_ARGUMENT', `policy = "${String(policy)}": expected one of ${POLICIES.join(', ')}`);
    }
    count('poolBytes', options.poolBytes, Number.MAX_SAFE_INTEGER);
    const Native = loadNative().binding.KvPool;
    return new KvPool(policy, native(() => new Native({ ...options, policy })));
  }

  /** Registers a model's KV geometry; returns its model id. */
  addModel(options: KvModelOptions): number {
    return native(() => this.#native.addModel(options));
  }

  /** Frees every block of the model and forgets it; its block ids become foreign. */
  removeModel(model: number): void {
    native(() => this.#native.removeModel(count('model', model)));
  }

  /** Allocates `count` blocks, all or none. */
  alloc(model: number, blocks: number): KvAllocResult {
    const r = native(() => this.#native.alloc(count('model', model), count('count', blocks)));
    return toAlloc(r.ok, r.available, r.blocks);
  }

  /** Frees blocks; throws KvError and frees nothing if any id is bad. */
  free(model: number, blocks: Uint32Array | readonly number[]): void {
    const ids = toIds('blocks', blocks);
    native(() => this.#native.free(count('model', model), ids));
  }

  /** Tokens the model's live sequences hold (for the live-token accounting). */
  setLiveTokens(model: number, tokens: number): void {
    native(() => this.#native.setLiveTokens(count('model', model), count('tokens', tokens, Number.MAX_SAFE_INTEGER)));
  }

  /** Blocks `alloc(model, n)` would grant right now. */
  availableBlocks(model: number): number {
    return native(() => this.#native.availableBlocks(count('model', model)));
  }

  /** Applies a whole iteration's frees, allocs and live-token counts in one native call. */
  step(batch: KvStep): { readonly allocs: readonly KvAllocResult[] } {
    const frees = batch.frees ?? [];
    const allocs = batch.allocs ?? [];
    const live = batch.liveTokens ?? [];
    const freeIds = frees.map((f, i) => toIds(`frees[${i}].blocks`, f.blocks));
    const ids = new Uint32Array(freeIds.reduce((n, a) => n + a.length, 0));
    let at = 0;
    for (const a of freeIds) {
      ids.set(a, at);
      at += a.length;
    }
    const r = native(() =>
      this.#native.step(
        Uint32Array.from(frees, (f, i) => count(`frees[${i}].model`, f.model)),
        Uint32Array.from(freeIds, (a) => a.length),
        ids,
        Uint32Array.from(allocs, (a, i) => count(`allocs[${i}].model`, a.model)),
        Uint32Array.from(allocs, (a, i) => count(`allocs[${i}].count`, a.count)),
        Uint32Array.from(live, (l, i) => count(`liveTokens[${i}].model`, l.model)),
        Float64Array.from(live, (l, i) => count(`liveTokens[${i}].tokens`, l.tokens, Number.MAX_SAFE_INTEGER)),
      ),
    );
    return {
      allocs: allocs.map((_, i) =>
        toAlloc(r.ok[i] === 1, r.available[i] ?? 0, r.ids.subarray(r.starts[i] ?? 0, r.starts[i + 1] ?? 0)),
      ),
    };
  }

  /** Byte offsets inside the model's blocks. */
  layout(model: number): KvLayout {
    return native(() => this.#native.layout(count('model', model)));
  }

  /** Byte offset of a live block from the pool base (virtual offset in `paged`). */
  blockOffset(model: number, block: number): number {
    return native(() => this.#native.blockOffset(count('model', model), count('block', block)));
  }

  /**
   * Reclaims memory the model holds but does not use (kv-slab): moves its live blocks out of its
   * emptiest slabs into free blocks of its fuller ones, copying their bytes, and releases the
   * emptied slabs to every model, at most `maxSlabs` of them. Block ids in `moves` change, so the
   * caller must rewrite its block tables. Other policies have nothing to compact and return no moves.
   */
  compact(model: number, maxSlabs: number): KvCompaction {
    return native(() => this.#native.compact(count('model', model), count('maxSlabs', maxSlabs)));
  }

  /** @internal The addon object, for native code that uses this pool (the executor). */
  nativeHandle(): NativeKvPool {
    return this.#native;
  }

  /** Exact accounting of the pool, per model and per geometry. */
  stats(): KvPoolStats {
    const s = this.#native.stats();
    return { ...s, byGeometry: byGeometry(s.models) };
  }
}
