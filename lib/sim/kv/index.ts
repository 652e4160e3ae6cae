/**
 * Builds a device's KV accounting for a plan under one memory policy.
 * @module
 */
import { PagedAccount } from './paged.js';
import { ReferenceSlabAccount } from './reference-slab.js';
import { chooseSlabBytes, SlabAccount } from './slab.js';
import { StaticAccount } from './static.js';
import type { KvAccount } from './types.js';
import { UnifiedAccount } from './unified.js';

/** KV memory policies the simulator models. */
export type KvPolicyName = 'slab' | 'reference-slab' | 'static' | 'unified' | 'paged';

/** Knobs of the KV policies. */
export interface KvAccountOptions {
  /** `paged`: driver time per page map or unmap, ms (default: kvcached's measured 8 µs, see paged.ts). */
  readonly mapCostMs?: number;
}

/** An empty account of `poolBytes` under `policy`; `blockBytes` are the blocks it will hold (for the slab size). */
export function makeAccount(policy: KvPolicyName, poolBytes: number, blockBytes: readonly number[], options: KvAccountOptions = {}): KvAccount {
  switch (policy) {
    case 'slab':
      return new SlabAccount({ poolBytes, slabBytes: chooseSlabBytes(blockBytes) });
    case 'reference-slab':
      return new ReferenceSlabAccount(poolBytes);
    case 'static':
      return new StaticAccount(poolBytes);
    case 'unified':
      return new UnifiedAccount(poolBytes);
    case 'paged':
      return new PagedAccount({ poolBytes, ...(options.mapCostMs !== undefined && { mapCostMs: options.mapCostMs }) });
  }
}

export { KVCACHED_MAP_COST_MS, PagedAccount } from './paged.js';
export { ReferenceSlabAccount } from './reference-slab.js';
export { chooseSlabBytes, SlabAccount } from './slab.js';
export { StaticAccount } from './static.js';
export { UnifiedAccount } from './unified.js';
export type { KvAccount, KvAccountStats, KvModelSpec } from './types.js';
