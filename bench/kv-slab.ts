/**
 * KV Slab fragmentation benchmark: replays one mixed-precision trace against the KV Slab (with and
 * without reclaim by compaction) and each baseline policy on the same pool size, then merges the
 * C++ alloc/free microbenchmark. See bench/README-kv-slab.md.
 *
 *   node --import tsx bench/kv-slab.ts [--seed N] [--quick]
 *
 * --quick: 30 s phases and no sweeps, a smoke test. For exploring: --load X (offered load),
 * --slab-mib N (KV Slab slab size), --compact-slabs N (most slabs compaction may release per
 * step) and --only a,b (policy labels) change the headline run and skip the sweeps; their results
 * go to kv-slab-custom.json so they never overwrite the reference run.
 *
 * Writes bench/results/kv-slab.json (kv-slab-quick.json with --quick) and prints a summary line.
 * The pieces, one idea each, are under bench/kv-slab/:
 *   config.ts       models, pool, trace shape, sweeps, command line
 *   policies.ts     the pools under test (kv-slab, kv-slab-nocompact, static, unified, paged, unified-scaled)
 *   sim.ts          model engines (queues) and requests (block tables)
 *   replay.ts       the serving loop
 *   compaction.ts   reclaim by compaction and its per-step cost log
 *   block-index.ts  block id -> block table, so compaction's moves rewrite in O(moves)
 *   metrics.ts      counters and window sums of one replay
 *   copy-cost.ts    bytes moved -> copy time (stated device bandwidth, measured host memcpy)
 *   report.ts       per-policy summaries and sweep rows
 *   microbench.ts   the C++ alloc/free microbenchmark
 *   main.ts         the run: trace, replays, sweeps, results file, summary line
 * @module
 */
import { main } from './kv-slab/main.js';

main(process.argv.slice(2));
