/**
 * The KV pool's data shapes: formats, geometries, options, steps and statistics. Plain types that
 * import nothing, so the addon's surface (lib/native/addon-types.ts) and the facade (lib/kv-pool.ts)
 * both build on them without a cycle.
 * @module
 */
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
  /** One layer's K region (data, then scales; int4: K's per-channel params, fp8: K's per-channel references). */
  readonly regionBytes: number;
  /** One layer's V region, after the K one: `layerStride = regionBytes + vRegionBytes`. */
  readonly vRegionBytes: number;
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
