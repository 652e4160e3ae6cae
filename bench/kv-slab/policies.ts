/**
 * The pools under test: the KV Slab (with and without reclaim by compaction) and the baselines,
 * each set up on the same pool size and the same four models.
 * @module
 */
import { KvPool, type KvGeometry, type KvPoolOptions } from '../../lib/index.js';
import type { Trace } from '../kv-trace.js';
import { GiB, MiB, MODELS, type Config } from './config.js';

export interface RunSpec {
  readonly label: string;
  readonly options: KvPoolOptions;
  readonly geometries: readonly KvGeometry[];
  /** static: bytes per model. */
  readonly partitions?: readonly number[];
  /** The replay reclaims other models' stranded slabs by compaction when a model runs short. */
  readonly compaction: boolean;
  readonly note: string;
}

/** Block bytes and token bytes as the library lays them out, from a throwaway pool. */
export function layouts(geometries: readonly KvGeometry[]): { blockBytes: number; tokenBytes: number }[] {
  const probe = KvPool.create({ policy: 'paged', poolBytes: 64 * GiB });
  return geometries.map((geometry, i) => {
    const l = probe.layout(probe.addModel({ name: `probe-${i}`, geometry }));
    return { blockBytes: l.blockBytes, tokenBytes: l.tokenBytes };
  });
}

/** The most tokens per block whose block still fits `blockBytes` (MuxServe-style equal-byte blocks). */
function scaledGeometry(g: KvGeometry, blockBytes: number): KvGeometry {
  const perToken = layouts([g])[0]?.tokenBytes ?? 1;
  for (let t = Math.floor(blockBytes / perToken); t > 1; t--) {
    const candidate = { ...g, tokensPerBlock: t };
    if ((layouts([candidate])[0]?.blockBytes ?? Infinity) <= blockBytes) return candidate;
  }
  return { ...g, tokensPerBlock: 1 };
}

/** Each model's demand share averaged over the trace's phases. */
export function averageShares(trace: Trace): number[] {
  return MODELS.map((_, m) => trace.phases.reduce((a, p) => a + (p.shares[m] ?? 0), 0) / trace.phases.length);
}

export function runSpecs(cfg: Config, trace: Trace): RunSpec[] {
  const geometries = MODELS.map((m) => m.geometry);
  const largest = Math.max(...layouts(geometries).map((l) => l.blockBytes));
  // Static partitions follow the trace's *average* demand, as the reference sizes engines from
  // configured rates: right on average, wrong in every phase.
  const partitions = averageShares(trace).map((s) => Math.floor((cfg.poolBytes * s) / 64) * 64);
  const slab: KvPoolOptions = { policy: 'kv-slab', poolBytes: cfg.poolBytes, slabBytes: cfg.slabBytes };
  const c = cfg.compaction;
  return [
    {
      label: 'kv-slab',
      options: slab,
      geometries,
      compaction: true,
      note:
        `${cfg.slabBytes / MiB} MiB slabs, fullest partial slab first, no reserves; a model short of blocks ` +
        `reclaims other models' stranded slabs by compaction (shortfall + ${c.marginSlabs} slabs, at most ${c.maxSlabsPerStep} per step)`,
    },
    {
      label: 'kv-slab-nocompact',
      options: slab,
      geometries,
      compaction: false,
      note: `${cfg.slabBytes / MiB} MiB slabs, fullest partial slab first, no reserves, never compacts`,
    },
    {
      label: 'static',
      options: { policy: 'static', poolBytes: cfg.poolBytes },
      geometries,
      partitions,
      compaction: false,
      note: 'one partition per model sized by its average share of KV demand over the trace',
    },
    {
      label: 'unified',
      options: { policy: 'unified', poolBytes: cfg.poolBytes, blockBytes: largest },
      geometries,
      compaction: false,
      note: `every block padded to the largest model's (${(largest / MiB).toFixed(2)} MiB)`,
    },
    {
      label: 'paged',
      options: { policy: 'paged', poolBytes: cfg.poolBytes, pageBytes: cfg.pageBytes, mapCostNs: cfg.mapCostNs },
      geometries,
      compaction: false,
      note: `${cfg.pageBytes / MiB} MiB pages mapped on demand, ${cfg.mapCostNs / 1000} us modelled per map/unmap`,
    },
    {
      label: 'unified-scaled',
      options: { policy: 'unified', poolBytes: cfg.poolBytes, blockBytes: largest },
      geometries: geometries.map((g) => scaledGeometry(g, largest)),
      compaction: false,
      note: 'unified, but each model packs as many tokens per block as fit (less padding, larger last blocks)',
    },
  ];
}
