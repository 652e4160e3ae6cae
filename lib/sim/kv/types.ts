/**
 * KV memory accounting of one simulated device: how many blocks each co-located model can get,
 * and what its sequences hold. Counts only, no memory: the real allocator is the C++ KvPool;
 * these mirror its policies so the simulator runs anywhere.
 * @module
 */

/** A model registered on a device. */
export interface KvModelSpec {
  readonly key: string;
  /** Bytes of one block on this device (tokensPerBlock × KV bytes per token / TP). */
  readonly blockBytes: number;
  readonly layers: number;
  /** kv-slab: bytes always available to it; static: its partition. */
  readonly reserveBytes: number;
  /** Configured rate (the reference sizes its pools by it). */
  readonly rate: number;
  /**
   * static: a replica a re-placement starts has no partition until it loads; this is the one it
   * then asks for (its plan's share), see {@link KvAccount.open}.
   */
  readonly pendingBytes?: number;
}

/** Totals over a device's pool. */
export interface KvAccountStats {
  readonly capacityBytes: number;
  /** Memory held by models (blocks, plus slab/page remainders no one else can use). */
  readonly heldBytes: number;
  /** Bytes of allocated blocks. */
  readonly blockBytes: number;
}

/** One device's KV accounting under one policy. */
export interface KvAccount {
  /** Registers a model; returns its index. Call {@link seal} after the last. */
  addModel(spec: KvModelSpec): number;
  /** Fixes static splits once every model is known. */
  seal(): void;
  /** Blocks model `m` could allocate now. */
  available(m: number): number;
  /** Grows sequence `seq` of model `m` to `blocks` blocks in all; all or nothing. */
  grow(m: number, seq: number, blocks: number): boolean;
  /** Frees everything sequence `seq` holds. */
  release(m: number, seq: number): void;
  /**
   * Takes `bytes` in all out of the pool for weights being loaded beside the KV (a
   * make-before-break move), or gives back what a smaller figure no longer needs; false, and
   * nothing changes, when the free memory is short. Shared pools take free blocks or slabs;
   * static partitions are never shrunk: only memory no live partition holds can be taken.
   */
  withhold?(bytes: number): boolean;
  /**
   * Static partitions: whether the pending partitions of `models` (replicas a re-placement
   * starts) fit the memory no live partition or withheld weight holds.
   */
  canOpen?(models: readonly number[]): boolean;
  /** Gives `models` their pending partitions, each cut to what is free if it does not fit. */
  open?(models: readonly number[]): void;
  /** A moved-away replica has drained and exited: its partition (holding nothing) is free. */
  retire?(m: number): void;
  /** Modelled allocator time (ms) charged to model `m` since the last call (VMM mapping). */
  takeOverheadMs(m: number): number;
  stats(): KvAccountStats;
}
