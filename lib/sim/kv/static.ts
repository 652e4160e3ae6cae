/**
 * Static per-model partitions (one vLLM engine per model with its own memory share): a model
 * never uses another's free blocks.
 * @module
 */
import type { KvAccount, KvAccountStats, KvModelSpec } from './types.js';

/** Static partitions; each model's `reserveBytes` is its partition. */
export class StaticAccount implements KvAccount {
  readonly #poolBytes: number;
  readonly #models: { spec: KvModelSpec; capacity: number; used: number }[] = [];
  readonly #seqs = new Map<number, number>();

  constructor(poolBytes: number) {
    this.#poolBytes = poolBytes;
  }

  addModel(spec: KvModelSpec): number {
    this.#models.push({ spec, capacity: 0, used: 0 });
    return this.#models.length - 1;
  }

  seal(): void {
    // Partitions never exceed the pool: scale them down together if the plan over-promised.
    const total = this.#models.reduce((a, x) => a + x.spec.reserveBytes, 0);
    const scale = total > this.#poolBytes ? this.#poolBytes / total : 1;
    for (const x of this.#models) x.capacity = Math.floor((x.spec.reserveBytes * scale) / x.spec.blockBytes);
  }

  available(m: number): number {
    const x = this.#models[m]!;
    return x.capacity - x.used;
  }

  grow(m: number, seq: number, blocks: number): boolean {
    const have = this.#seqs.get(seq) ?? 0;
    const need = blocks - have;
    if (need <= 0) return true;
    if (need > this.available(m)) return false;
    this.#models[m]!.used += need;
    this.#seqs.set(seq, blocks);
    return true;
  }

  release(m: number, seq: number): void {
    const have = this.#seqs.get(seq);
    if (have === undefined) return;
    this.#seqs.delete(seq);
    this.#models[m]!.used -= have;
  }

  takeOverheadMs(): number {
    return 0;
  }

  stats(): KvAccountStats {
    let held = 0;
    let blocks = 0;
    for (const x of this.#models) {
      held += x.capacity * x.spec.blockBytes;
      blocks += x.used * x.spec.blockBytes;
    }
    return { capacityBytes: this.#poolBytes, heldBytes: held, blockBytes: blocks };
  }
}
