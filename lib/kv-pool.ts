/**
 * KV cache memory shared by co-located models: the KV Slab (FineServe's allocator) and, behind the
 * same interface, the baselines it is compared against. All bookkeeping runs in the native addon;
 * this file gives it types, validates arguments and turns native errors into {@link KvError}s.
 * @module
 */
import { codeOf, KvError, type KvErrorCode } from './errors.js';
import type { NativeKvPool } from './native/addon-types.js';
import { loadNative } from './native/loader.js';
import type { KvFormat, KvGeometry, KvPolicy, KvPoolOptions, KvModelOptions, KvAllocResult, KvStep, KvCompaction, KvLayout, KvModelStats, KvGeometryStats, KvPoolStats } from './kv-types.js';

export type { KvFormat, KvGeometry, KvPolicy, KvPoolOptions, KvModelOptions, KvAllocResult, KvStep, KvCompaction, KvLayout, KvModelStats, KvGeometryStats, KvPoolStats } from './kv-types.js';

/**
 * Bytes one token of a geometry takes in the cache (K and V of every layer and KV head, scales
 * included), before the layout's alignment padding: the addon's `layout().tokenBytes`. int4 keeps
 * V's scale per token and K's per channel over a block (`headDim` f16 steps and minima per head),
 * fp8 K's per-channel references (`headDim` f16 per head and block), spread over the block's
 * tokens and rounded down.
 */
export function kvTokenBytes(g: Pick<KvGeometry, 'tokensPerBlock' | 'layers' | 'kvHeads' | 'headDim' | 'format' | 'scaleBytes'>): number {
  const bits = { f32: 32, f16: 16, bf16: 16, fp8: 8, int8: 8, int4: 4 }[g.format];
  const scale = g.scaleBytes ?? 0;
  if (g.format !== 'int4' && g.format !== 'fp8') return 2 * g.layers * g.kvHeads * ((g.headDim * bits) / 8 + scale);
  // K's params per block and head instead of its scales: int4 f16 steps and minima, fp8 f16 references.
  const params = (g.format === 'int4' ? 4 : 2) * g.headDim;
  const perBlock = g.layers * g.kvHeads * (g.tokensPerBlock * ((2 * g.headDim * bits) / 8 + scale) + params);
  return Math.floor(perBlock / g.tokensPerBlock);
}

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
  readonly #pool: NativeKvPool;
  #disposed = false;

  private constructor(policy: KvPolicy, pool: NativeKvPool) {
    this.policy = policy;
    this.#pool = pool;
  }

  get #native(): NativeKvPool {
    if (this.#disposed) throw new KvError('ERR_KV_DISPOSED', 'the KV pool was disposed');
    return this.#pool;
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Frees the pool's memory now (executors still using it keep their share until they are
   * disposed). Idempotent; any later call throws `ERR_KV_DISPOSED`.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#pool.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
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
