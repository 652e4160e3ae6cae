/**
 * kvcached/Prism-style KV: each model maps physical pages into its own virtual KV range on demand
 * (CUDA VMM). Memory is shared at page granularity; every page mapped or unmapped costs driver
 * time on the step that needs it (notes C3). A model's K and V of every layer are separate ranges
 * (2 × layers of them), laid out alike, so one virtual page index stands for that many physical
 * pages.
 *
 * Block for block the native `paged` KvPool (cpp/core/kv/paged_pool.cc) with a page of
 * 2 × layers × pageBytes (test/sim-kv-parity.test.ts): block j of a model covers bytes
 * [j × blockBytes, (j + 1) × blockBytes) of its range, a freed index is reused lowest first, and
 * a page stays mapped while any live block touches it, so freed holes below the highest live
 * block keep their pages.
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

/** One model's virtual range; pages are virtual pages of `ranges × pageBytes` physical bytes. */
interface Space {
  readonly spec: KvModelSpec;
  readonly ranges: number;
  /** Indices below `high` that are free: a min-heap, the lowest is reused first. */
  readonly freeBelow: number[];
  readonly pageRefs: number[];
  high: number;
  mappedPages: number;
  blocks: number;
  overhead: number;
}

function heapPush(h: number[], x: number): void {
  let i = h.push(x) - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p]! <= x) break;
    h[i] = h[p]!;
    i = p;
  }
  h[i] = x;
}

function heapPop(h: number[]): number {
  const top = h[0]!;
  const x = h.pop()!;
  if (h.length === 0) return top;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= h.length) break;
    const c = l + 1 < h.length && h[l + 1]! < h[l]! ? l + 1 : l;
    if (h[c]! >= x) break;
    h[i] = h[c]!;
    i = c;
  }
  h[i] = x;
  return top;
}

/** Page-granular on-demand mapping. */
export class PagedAccount implements KvAccount {
  readonly #page: number;
  readonly #pages: number;
  readonly #mapCost: number;
  readonly #spaces: Space[] = [];
  readonly #seqs = new Map<number, number[]>();
  /** Physical pages not mapped by any model. */
  #free: number;
  /** Pages taken out for weights loaded beside the KV. */
  #withheld = 0;

  constructor(o: PagedAccountOptions) {
    this.#page = o.pageBytes ?? 2 * 1024 * 1024;
    this.#pages = Math.floor(o.poolBytes / this.#page);
    this.#free = this.#pages;
    this.#mapCost = o.mapCostMs ?? KVCACHED_MAP_COST_MS;
  }

  addModel(spec: KvModelSpec): number {
    this.#spaces.push({ spec, ranges: 2 * spec.layers, freeBelow: [], pageRefs: [], high: 0, mappedPages: 0, blocks: 0, overhead: 0 });
    return this.#spaces.length - 1;
  }

  seal(): void {}

  // Virtual pages [first, last] that block j touches.
  #span(s: Space, j: number): [number, number] {
    const unit = s.ranges * this.#page;
    const b = s.spec.blockBytes;
    return [Math.floor((j * b) / unit), Math.floor(((j + 1) * b - 1) / unit)];
  }

  // Blocks (up to `limit`) the model could place now: paged_pool.cc placeable().
  #placeable(s: Space, limit: number): number {
    const unit = s.ranges * this.#page;
    const budget0 = Math.floor(this.#free / s.ranges);
    const freed = s.freeBelow.length;
    const top = s.high === 0 ? 0 : Math.floor((s.high * s.spec.blockBytes - 1) / unit) + 1;
    const unmapped = top - s.mappedPages;
    if (unmapped <= budget0) {
      if (limit <= freed) return limit;
      const endBlock = Math.floor(((top + budget0 - unmapped) * unit) / s.spec.blockBytes);
      const fresh = Math.max(0, endBlock - s.high);
      return freed + Math.min(fresh, limit - freed);
    }
    // Nearly full: not every freed index can be backed; walk them lowest first.
    let budget = budget0;
    let count = 0;
    let nextPage = 0;
    for (const j of [...s.freeBelow].sort((a, b) => a - b)) {
      if (count >= limit) break;
      const [f, last] = this.#span(s, j);
      let need = 0;
      for (let p = Math.max(f, nextPage); p <= last; p++) if ((s.pageRefs[p] ?? 0) === 0) need++;
      if (need > budget) break;
      budget -= need;
      nextPage = Math.max(nextPage, last + 1);
      count++;
    }
    return count;
  }

  available(m: number): number {
    return this.#placeable(this.#spaces[m]!, Number.MAX_SAFE_INTEGER);
  }

  grow(m: number, seq: number, blocks: number): boolean {
    const list = this.#seqs.get(seq) ?? [];
    const need = blocks - list.length;
    if (need <= 0) return true;
    const s = this.#spaces[m]!;
    if (this.#placeable(s, need) < need) return false;
    for (let k = 0; k < need; k++) {
      let j: number;
      if (s.freeBelow.length > 0) {
        j = heapPop(s.freeBelow);
      } else {
        j = s.high++;
      }
      const [f, last] = this.#span(s, j);
      for (let p = f; p <= last; p++) if ((s.pageRefs[p] = (s.pageRefs[p] ?? 0) + 1) === 1) this.#map(s, 1);
      list.push(j);
    }
    s.blocks += need;
    this.#seqs.set(seq, list);
    return true;
  }

  release(m: number, seq: number): void {
    const list = this.#seqs.get(seq);
    if (list === undefined) return;
    this.#seqs.delete(seq);
    const s = this.#spaces[m]!;
    for (const j of list) {
      heapPush(s.freeBelow, j);
      const [f, last] = this.#span(s, j);
      for (let p = f; p <= last; p++) if (--s.pageRefs[p]! === 0) this.#map(s, -1);
    }
    s.blocks -= list.length;
  }

  // Maps (+1) or unmaps (-1) one virtual page: `ranges` physical pages, each a driver call.
  #map(s: Space, sign: 1 | -1): void {
    s.mappedPages += sign;
    this.#free -= sign * s.ranges;
    s.overhead += s.ranges * this.#mapCost;
  }

  withhold(bytes: number): boolean {
    const want = Math.max(0, Math.ceil(bytes / this.#page));
    if (want - this.#withheld > this.#free) return false;
    this.#free -= want - this.#withheld;
    this.#withheld = want;
    return true;
  }

  takeOverheadMs(m: number): number {
    const s = this.#spaces[m]!;
    const o = s.overhead;
    s.overhead = 0;
    return o;
  }

  stats(): KvAccountStats {
    let blocks = 0;
    for (const s of this.#spaces) blocks += s.blocks * s.spec.blockBytes;
    return { capacityBytes: (this.#pages - this.#withheld) * this.#page, heldBytes: (this.#pages - this.#withheld - this.#free) * this.#page, blockBytes: blocks };
  }
}
