/**
 * Reclaim by compaction, as a local scheduler does it: when a model cannot get the blocks it needs
 * this step, the scheduler asks the models holding stranded free blocks (most first) to compact,
 * for the slabs the shortfall needs plus a margin and never more than a bounded number per step,
 * rewrites the moved blocks in the block tables, and retries. The cost, bytes copied per step, is
 * logged so it can be converted to copy time.
 * @module
 */
import type { KvPool, KvPoolStats } from '../../lib/index.js';
import type { BlockIndex } from './block-index.js';
import type { CompactionConfig } from './config.js';
import type { ModelSim } from './sim.js';

/** Per-step compaction record of one replay. */
export class CompactionLog {
  readonly bytesMoved: Float64Array;
  readonly blocksMoved: Float64Array;
  readonly slabsReleased: Float64Array;
  /** Native time of the compact() calls (bookkeeping only: the bench pool has no memory to copy). */
  readonly compactNs: Float64Array;
  /** Steps where some model was short of blocks. */
  shortSteps = 0;
  /** ... and no model had a slab's worth of stranded blocks to give. */
  noDonorSteps = 0;
  /** ... and the donors could not empty a slab (their other slabs lacked room). */
  stuckSteps = 0;
  compactCalls = 0;
  retryRounds = 0;
  /** Allocations that failed, then succeeded in the retry after compaction. */
  retryGrowth = 0;
  retryAdmitted = 0;
  /** Blocks moved per donor model, by model index. */
  readonly blocksMovedPerModel: number[];

  constructor(steps: number, models: number) {
    this.bytesMoved = new Float64Array(steps);
    this.blocksMoved = new Float64Array(steps);
    this.slabsReleased = new Float64Array(steps);
    this.compactNs = new Float64Array(steps);
    this.blocksMovedPerModel = new Array<number>(models).fill(0);
  }
}

/**
 * Releases slabs held as stranded free blocks by models other than the ones short of blocks.
 * `shortfall[i]`: blocks model i needs this step beyond what it can get now. Returns the slabs
 * released (0 when nobody is short, nobody can give, or nothing could be emptied). Donors are
 * chosen from `telemetry`, the pool stats at the end of the previous step, as a scheduler reading
 * per-iteration pool telemetry would (a fresh stats() costs ~40 us, more than the step's pool work);
 * compact() itself decides what can be released now. `native` times the compact() calls into the
 * step's native time.
 */
export function reclaim(
  pool: KvPool,
  sims: readonly ModelSim[],
  shortfall: readonly number[],
  index: BlockIndex,
  c: CompactionConfig,
  log: CompactionLog,
  step: number,
  telemetry: KvPoolStats,
  native: <T>(call: () => T) => T,
): number {
  if (!shortfall.some((s) => s > 0)) return 0;
  log.shortSteps++;
  const st = telemetry;
  const byId = new Map(st.models.map((m) => [m.id, m]));
  let want = 0;
  for (const s of sims) {
    const short = shortfall[s.index] ?? 0;
    const bps = byId.get(s.id)?.blocksPerSlab ?? 0;
    if (short > 0 && bps > 0) want += Math.ceil(short / bps);
  }
  want = Math.min(c.maxSlabsPerStep, want + c.marginSlabs);
  // Donors: models not short themselves (compacting a model cannot raise what it can get: its free
  // blocks already count) with at least minDonorSlabs of stranded blocks, most stranded first.
  const donors = sims
    .filter((s) => (shortfall[s.index] ?? 0) === 0 && (byId.get(s.id)?.externalBytes ?? 0) >= c.minDonorSlabs * st.slabBytes)
    .sort((a, b) => (byId.get(b.id)?.externalBytes ?? 0) - (byId.get(a.id)?.externalBytes ?? 0));
  if (donors.length === 0) {
    log.noDonorSteps++;
    return 0;
  }
  let released = 0;
  for (const d of donors) {
    if (released >= want) break;
    const t0 = process.hrtime.bigint();
    const r = native(() => pool.compact(d.id, want - released));
    log.compactNs[step] = (log.compactNs[step] ?? 0) + Number(process.hrtime.bigint() - t0);
    log.compactCalls++;
    index.rewrite(d.index, r.moves);
    const moved = r.moves.length / 2;
    released += r.released;
    log.blocksMoved[step] = (log.blocksMoved[step] ?? 0) + moved;
    log.bytesMoved[step] = (log.bytesMoved[step] ?? 0) + moved * d.blockBytes;
    log.blocksMovedPerModel[d.index] = (log.blocksMovedPerModel[d.index] ?? 0) + moved;
  }
  log.slabsReleased[step] = (log.slabsReleased[step] ?? 0) + released;
  if (released === 0) log.stuckSteps++;
  return released;
}
