/**
 * MuxServe-style unified KV: one pool of equal blocks sized for the largest model's block, shared
 * on demand; a smaller model's block wastes the difference (internal fragmentation, notes C2).
 * @module
 */
import type { KvAccount, KvAccountStats, KvModelSpec } from './types.js';

/** Unified padded blocks. */
export class UnifiedAccount implements KvAccount {
  readonly #poolBytes: number;
  readonly #models: KvModelSpec[] = [];
  readonly #seqs = new Map<number, number>();
  #unit = 0;
  #capacity = 0;
  #used = 0;
  #withheld = 0;

  constructor(poolBytes: number) {
    this.#poolBytes = poolBytes;
  }

  addModel(spec: KvModelSpec): number {
    this.#models.push(spec);
    return this.#models.length - 1;
  }

  seal(): void {
    this.#unit = Math.max(...this.#models.map((m) => m.blockBytes), 1);
    this.#capacity = Math.floor(this.#poolBytes / this.#unit);
  }

  available(_m: number): number {
    return this.#capacity - this.#withheld - this.#used;
  }

  grow(_m: number, seq: number, blocks: number): boolean {
    const have = this.#seqs.get(seq) ?? 0;
    const need = blocks - have;
    if (need <= 0) return true;
    if (need > this.available(_m)) return false;
    this.#used += need;
    this.#seqs.set(seq, blocks);
    return true;
  }

  release(_m: number, seq: number): void {
    const have = this.#seqs.get(seq);
    if (have === undefined) return;
    this.#seqs.delete(seq);
    this.#used -= have;
  }

  withhold(bytes: number): boolean {
    const want = Math.max(0, Math.ceil(bytes / this.#unit));
    if (want > this.#capacity - this.#used) return false;
    this.#withheld = want;
    return true;
  }

  takeOverheadMs(): number {
    return 0;
  }

  stats(): KvAccountStats {
    return { capacityBytes: this.#poolBytes - this.#withheld * this.#unit, heldBytes: this.#used * this.#unit, blockBytes: this.#used * this.#unit };
  }
}
