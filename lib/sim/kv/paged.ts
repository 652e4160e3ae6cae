/**
 * kvcached/Prism-style KV: each model maps physical pages into its own virtual KV range on demand
 * (CUDA VMM). Memory is shared at page granularity; every page mapped or unmapped costs driver
 * time on the step that needs it (notes C3). A model's K and V of every layer are separate ranges,
 * so each keeps up to 2 × layers partly filled pages.
 * @module
 */
import type { KvAccount, KvAccountStats, KvModelSpec } from './types.js';

/**
 * Map cost per 2 MiB page of one layer's K or V: 8 µs. kvcached's own map benchmark
 * (github.com/ovg-project/kvcached, benchmarks/bench_map_parallelism/README.md, L40S) maps 100
 * logical pages (each one 2 MiB page per layer for K and V) in 52 ms mean, 16 ms at best, with its
 * contiguous layout (20x slower without): 0.52 ms per logical page, 8 µs per physical page at 32
 * layers (64 maps). The non-contiguous layout's 165 µs per map is the pessimistic end of a sweep.
 */
export const KVCACHED_MAP_COST_MS = 0.52 / 64;

/** Options of {@link PagedAccount}. */
export interface PagedAccountOptions {
  readonly poolBytes: number;
  /** Default 2 MiB. */
  readonly pageBytes?: number;
  /** Driver time of one map or unmap of one 2 MiB page of one layer's K or V; default {@link KVCACHED_MAP_COST_MS}. */
  readonly mapCostMs?: number;
}

/** Page-granular on-demand mapping. */
export class PagedAccount implements KvAccount {
  readonly #page: number;
  readonly #pages: number;
  readonly #mapCost: number;
  readonly #models: { spec: KvModelSpec; blocks: number; pages: number; overhead: number }[] = [];
  readonly #seqs = new Map<number, number>();
  #mapped = 0;

  constructor(o: PagedAccountOptions) {
    this.#page = o.pageBytes ?? 2 * 1024 * 1024;
    this.#pages = Math.floor(o.poolBytes / this.#page);
    this.#mapCost = o.mapCostMs ?? KVCACHED_MAP_COST_MS;
  }

  addModel(spec: KvModelSpec): number {
    this.#models.push({ spec, blocks: 0, pages: 0, overhead: 0 });
    return this.#models.length - 1;
  }

  seal(): void {}

  #pagesFor(m: number, blocks: number): number {
    const x = this.#models[m]!;
    const ranges = 2 * x.spec.layers;
    return ranges * Math.ceil((blocks * x.spec.blockBytes) / ranges / this.#page);
  }

  available(m: number): number {
    const x = this.#models[m]!;
    const spare = this.#pages - this.#mapped;
    // Largest extra block count whose pages fit: pages grow in steps of 2 × layers.
    const ranges = 2 * x.spec.layers;
    const maxPages = x.pages + Math.floor(spare / ranges) * ranges;
    const maxBlocks = Math.floor((maxPages * this.#page) / x.spec.blockBytes);
    return Math.max(0, maxBlocks - x.blocks);
  }

  grow(m: number, seq: number, blocks: number): boolean {
    const have = this.#seqs.get(seq) ?? 0;
    const need = blocks - have;
    if (need <= 0) return true;
    if (need > this.available(m)) return false;
    this.#resize(m, this.#models[m]!.blocks + need);
    this.#seqs.set(seq, blocks);
    return true;
  }

  release(m: number, seq: number): void {
    const have = this.#seqs.get(seq);
    if (have === undefined) return;
    this.#seqs.delete(seq);
    this.#resize(m, this.#models[m]!.blocks - have);
  }

  #resize(m: number, blocks: number): void {
    const x = this.#models[m]!;
    const pages = this.#pagesFor(m, blocks);
    x.overhead += Math.abs(pages - x.pages) * this.#mapCost;
    this.#mapped += pages - x.pages;
    x.pages = pages;
    x.blocks = blocks;
  }

  takeOverheadMs(m: number): number {
    const x = this.#models[m]!;
    const o = x.overhead;
    x.overhead = 0;
    return o;
  }

  stats(): KvAccountStats {
    let blocks = 0;
    for (const x of this.#models) blocks += x.blocks * x.spec.blockBytes;
    return { capacityBytes: this.#pages * this.#page, heldBytes: this.#mapped * this.#page, blockBytes: blocks };
  }
}
