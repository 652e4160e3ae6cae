/**
 * Static per-model partitions (one vLLM engine per model with its own memory share): a model
 * never uses another's free blocks.
 *
 * In a re-placement an engine owns its partition from start to exit, as vLLM's
 * `gpu_memory_utilization` does: a replica the move starts gets its partition only when the memory
 * is free ({@link StaticAccount.open}; until then its weights load waits), a moved-away one frees
 * its partition when it has drained and exits ({@link StaticAccount.retire}), and weights loading
 * beside the partitions take only memory no partition holds ({@link StaticAccount.withhold}).
 * @module
 */
import type { KvAccount, KvAccountStats, KvModelSpec } from './types.js';

/** Static partitions; each model's `reserveBytes` is its partition. */
export class StaticAccount implements KvAccount {
  readonly #poolBytes: number;
  readonly #models: { spec: KvModelSpec; capacity: number; used: number }[] = [];
  readonly #seqs = new Map<number, number>();
  #withheld = 0;

  constructor(poolBytes: number) {
    this.#poolBytes = poolBytes;
  }

  addModel(spec: KvModelSpec): number {
    this.#models.push({ spec, capacity: 0, used: 0 });
    return this.#models.length - 1;
  }

  seal(): void {
    // Partitions never exceed the pool: scale them down together if the plan over-promised.
    // Replicas a re-placement starts have no partition yet (their reserveBytes is 0).
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

  // Bytes held by live partitions.
  #partitioned(): number {
    return this.#models.reduce((a, x) => a + x.capacity * x.spec.blockBytes, 0);
  }

  withhold(bytes: number): boolean {
    const want = Math.max(0, bytes);
    if (want > this.#withheld && this.#partitioned() + want > this.#poolBytes) return false;
    this.#withheld = want;
    return true;
  }

  canOpen(models: readonly number[]): boolean {
    const need = models.reduce((a, m) => a + (this.#models[m]!.spec.pendingBytes ?? 0), 0);
    return this.#partitioned() + this.#withheld + need <= this.#poolBytes;
  }

  open(models: readonly number[]): void {
    for (const m of models) {
      const x = this.#models[m]!;
      const free = Math.max(0, this.#poolBytes - this.#withheld - this.#partitioned());
      x.capacity = Math.max(x.capacity, Math.floor(Math.min(x.spec.pendingBytes ?? 0, free) / x.spec.blockBytes));
    }
  }

  retire(m: number): void {
    const x = this.#models[m]!;
    x.capacity = x.used;
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
    return { capacityBytes: this.#poolBytes - this.#withheld, heldBytes: held, blockBytes: blocks };
  }
}
