/**
 * The reference FineServe KV Slab as its code sizes it (notes §2.3–2.6): slab = 2 × LCM of every
 * co-located per-layer block size; one pool per layer count, split statically at start (each
 * engine's minimum of one 2048-token prefill, the rest by configured rate × layers); inside a
 * pool, slabs are shared dynamically and a partial slab is picked arbitrarily.
 *
 * The split is never re-balanced (notes §2.9), so weights loading beside the KV in a
 * make-before-break move take their memory from every pool in proportion to its size, each only
 * from its free slabs; when one pool has too few free slabs the load waits, even if another pool
 * has room.
 * @module
 */
import { SlabAccount } from './slab.js';
import type { KvAccount, KvAccountStats, KvModelSpec } from './types.js';

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Reference slab pools split by layer count. */
export class ReferenceSlabAccount implements KvAccount {
  readonly #poolBytes: number;
  readonly #tokensPerBlock: number[] = [];
  readonly #specs: KvModelSpec[] = [];
  readonly #where: { pool: SlabAccount; index: number }[] = [];
  #pools: SlabAccount[] = [];

  constructor(poolBytes: number) {
    this.#poolBytes = poolBytes;
  }

  /** `tokensPerBlock` is needed for the minimum reservation; pass it through the key's spec. */
  addModel(spec: KvModelSpec & { tokensPerBlock?: number }): number {
    this.#specs.push(spec);
    this.#tokensPerBlock.push(spec.tokensPerBlock ?? 16);
    return this.#specs.length - 1;
  }

  seal(): void {
    // Per-layer, per-K-or-V block bytes: our blocks span all layers, K and V.
    const perLayer = this.#specs.map((s) => s.blockBytes / (2 * s.layers));
    const lcm = perLayer.reduce((a, b) => (a * b) / gcd(a, b), 1);
    const slab = 2 * lcm;
    const layerSlabs = Math.floor(this.#poolBytes / 2 / slab);
    const groups = [...new Set(this.#specs.map((s) => s.layers))].sort((a, b) => a - b);
    const minimum = new Map<number, number>();
    const weight = new Map<number, number>();
    this.#specs.forEach((s, i) => {
      const perSlab = slab / perLayer[i]!;
      const min = Math.ceil(2048 / this.#tokensPerBlock[i]! / perSlab) * s.layers;
      minimum.set(s.layers, (minimum.get(s.layers) ?? 0) + min);
      weight.set(s.layers, (weight.get(s.layers) ?? 0) + s.rate * s.layers);
    });
    const leftover = Math.max(0, layerSlabs - [...minimum.values()].reduce((a, b) => a + b, 0));
    const totalWeight = [...weight.values()].reduce((a, b) => a + b, 0);
    const pools = new Map<number, SlabAccount>();
    for (const layers of groups) {
      const share = totalWeight > 0 ? (leftover * weight.get(layers)!) / totalWeight : leftover / groups.length;
      const size = Math.floor(share / layers) * layers + minimum.get(layers)!;
      // A pool of `size` layer-slabs is size / layers slabs spanning every layer, K and V.
      pools.set(layers, new SlabAccount({ poolBytes: (size / layers) * 2 * layers * slab, slabBytes: 2 * layers * slab, choice: 'any', reserves: false }));
    }
    this.#pools = [...pools.values()];
    this.#specs.forEach((s) => {
      const pool = pools.get(s.layers)!;
      this.#where.push({ pool, index: pool.addModel(s) });
    });
  }

  available(m: number): number {
    const w = this.#where[m]!;
    return w.pool.available(w.index);
  }

  grow(m: number, seq: number, blocks: number): boolean {
    const w = this.#where[m]!;
    return w.pool.grow(w.index, seq, blocks);
  }

  release(m: number, seq: number): void {
    const w = this.#where[m]!;
    w.pool.release(w.index, seq);
  }

  withhold(bytes: number): boolean {
    const total = this.#pools.reduce((a, p) => a + p.slabs * p.slabBytes, 0);
    const before = this.#pools.map((p) => (p.slabs * p.slabBytes - p.stats().capacityBytes));
    const share = (p: SlabAccount): number => (total > 0 ? Math.max(0, bytes) * ((p.slabs * p.slabBytes) / total) : 0);
    for (let i = 0; i < this.#pools.length; i++) {
      if (this.#pools[i]!.withhold(share(this.#pools[i]!))) continue;
      // All or nothing: put back what the pools before this one had withheld.
      for (let j = 0; j < i; j++) this.#pools[j]!.withhold(before[j]!);
      return false;
    }
    return true;
  }

  takeOverheadMs(): number {
    return 0;
  }

  stats(): KvAccountStats {
    const parts = this.#pools.map((p) => p.stats());
    return {
      capacityBytes: parts.reduce((a, p) => a + p.capacityBytes, 0),
      heldBytes: parts.reduce((a, p) => a + p.heldBytes, 0),
      blockBytes: parts.reduce((a, p) => a + p.blockBytes, 0),
    };
  }
}
