/**
 * The KV Slab as accounting: equal slabs, each cut into one model's blocks while it holds any,
 * back to the free list when emptied; allocation from the fullest partial slab first; per-model
 * reserves (slabs owed to a model below its reserve are not handed to others). With
 * `choice: 'any'` and no reserves it is the reference's table (arbitrary partial slab).
 * @module
 */
import { PlanError } from '../../scheduler/errors.js';
import type { KvAccount, KvAccountStats, KvModelSpec } from './types.js';

/** Options of {@link SlabAccount}. */
export interface SlabAccountOptions {
  readonly poolBytes: number;
  readonly slabBytes: number;
  /** `fullest`: ours; `any`: the reference's set.pop() (modelled as the oldest partial slab). */
  readonly choice?: 'fullest' | 'any';
  /** Honour reserves (ours); the reference has none at run time. */
  readonly reserves?: boolean;
}

interface SlabModel {
  readonly spec: KvModelSpec;
  readonly perSlab: number;
  readonly reserveSlabs: number;
  held: number;
  blocks: number;
  readonly partial: number[];
}

/** Slab accounting; see the module comment. */
export class SlabAccount implements KvAccount {
  readonly slabBytes: number;
  readonly slabs: number;
  readonly #choice: 'fullest' | 'any';
  readonly #reserves: boolean;
  readonly #used: Int32Array;
  readonly #owner: Int32Array;
  // When each slab's use count last changed: among equally full slabs the native pool's bucket
  // list hands out the one re-filed last (LIFO), and block-for-block parity needs the same pick.
  readonly #stamp: Float64Array;
  #clock = 0;
  readonly #free: number[] = [];
  readonly #models: SlabModel[] = [];
  readonly #seqs = new Map<number, number[]>();
  readonly #withheld: number[] = [];

  constructor(o: SlabAccountOptions) {
    this.slabBytes = o.slabBytes;
    this.slabs = Math.max(0, Math.floor(o.poolBytes / o.slabBytes));
    this.#choice = o.choice ?? 'fullest';
    this.#reserves = o.reserves ?? true;
    this.#used = new Int32Array(this.slabs);
    this.#owner = new Int32Array(this.slabs).fill(-1);
    this.#stamp = new Float64Array(this.slabs);
    for (let s = this.slabs - 1; s >= 0; s--) this.#free.push(s);
  }

  addModel(spec: KvModelSpec): number {
    const perSlab = Math.floor(this.slabBytes / spec.blockBytes);
    if (perSlab < 1) throw new PlanError('ERR_SIM_INPUT', spec.key, 'blockBytes', `${spec.blockBytes} B blocks do not fit ${this.slabBytes} B slabs`);
    this.#models.push({ spec, perSlab, reserveSlabs: this.#reserves ? Math.ceil(spec.reserveBytes / this.slabBytes) : 0, held: 0, blocks: 0, partial: [] });
    return this.#models.length - 1;
  }

  seal(): void {}

  // Free slabs model m may take: those not owed to other models' unmet reserves.
  #takeable(m: number): number {
    let owed = 0;
    this.#models.forEach((x, i) => {
      if (i !== m) owed += Math.max(0, x.reserveSlabs - x.held);
    });
    return Math.max(0, this.#free.length - owed);
  }

  available(m: number): number {
    const x = this.#models[m]!;
    let n = 0;
    for (const s of x.partial) n += x.perSlab - this.#used[s]!;
    return n + this.#takeable(m) * x.perSlab;
  }

  grow(m: number, seq: number, blocks: number): boolean {
    const list = this.#seqs.get(seq) ?? [];
    const need = blocks - list.length;
    if (need <= 0) return true;
    if (need > this.available(m)) return false;
    const x = this.#models[m]!;
    for (let k = 0; k < need; k++) {
      let s: number;
      if (x.partial.length > 0) {
        let at = 0;
        if (this.#choice === 'fullest') {
          for (let i = 1; i < x.partial.length; i++) {
            const a = x.partial[i]!;
            const b = x.partial[at]!;
            if (this.#used[a]! > this.#used[b]! || (this.#used[a] === this.#used[b] && this.#stamp[a]! > this.#stamp[b]!)) at = i;
          }
        }
        s = x.partial[at]!;
        if (this.#used[s]! + 1 === x.perSlab) x.partial.splice(at, 1);
      } else {
        s = this.#free.pop()!;
        this.#owner[s] = m;
        x.held++;
        if (x.perSlab > 1) x.partial.push(s);
      }
      this.#used[s]!++;
      this.#stamp[s] = ++this.#clock;
      list.push(s);
    }
    x.blocks += need;
    this.#seqs.set(seq, list);
    return true;
  }

  release(m: number, seq: number): void {
    const list = this.#seqs.get(seq);
    if (list === undefined) return;
    this.#seqs.delete(seq);
    const x = this.#models[m]!;
    for (const s of list) {
      const wasFull = this.#used[s] === x.perSlab;
      this.#used[s]!--;
      this.#stamp[s] = ++this.#clock;
      if (this.#used[s] === 0) {
        if (!wasFull) x.partial.splice(x.partial.indexOf(s), 1);
        this.#owner[s] = -1;
        x.held--;
        this.#free.push(s);
      } else if (wasFull) {
        x.partial.push(s);
      }
    }
    x.blocks -= list.length;
  }

  withhold(bytes: number): boolean {
    const want = Math.max(0, Math.ceil(bytes / this.slabBytes));
    // Weights take free slabs no model is owed (reserves stay whole).
    if (want - this.#withheld.length > this.#takeable(-1)) return false;
    while (this.#withheld.length < want) this.#withheld.push(this.#free.pop()!);
    while (this.#withheld.length > want) this.#free.push(this.#withheld.pop()!);
    return true;
  }

  takeOverheadMs(): number {
    return 0;
  }

  stats(): KvAccountStats {
    let held = 0;
    let blocks = 0;
    for (const x of this.#models) {
      held += x.held * this.slabBytes;
      blocks += x.blocks * x.spec.blockBytes;
    }
    return { capacityBytes: (this.slabs - this.#withheld.length) * this.slabBytes, heldBytes: held, blockBytes: blocks };
  }
}

/** Our slab size: a power of two from 2 MiB holding at least 8 of the largest block (tail ≤ 12.5 %). */
export function chooseSlabBytes(blockBytes: readonly number[]): number {
  let slab = 2 * 1024 * 1024;
  const largest = Math.max(...blockBytes, 1);
  while (slab < 8 * largest) slab *= 2;
  return slab;
}
