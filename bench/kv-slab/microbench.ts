/**
 * The C++ alloc/free microbenchmark (bench/cpp/kv_alloc_bench.cc), built and run through
 * bench/build-alloc-bench.mjs with the replay's pool and models.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Trace } from '../kv-trace.js';
import { MODELS, type Config } from './config.js';
import { averageShares } from './policies.js';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** Medians over repeats: wall time, and this thread's CPU time (what the allocator itself spent). */
export interface MicroTiming {
  readonly allocNsPerBlock: number;
  readonly freeNsPerBlock: number;
  readonly allocCpuNsPerBlock: number;
  readonly freeCpuNsPerBlock: number;
  readonly modelledMapNsPerBlockOp: number;
}

export interface MicroPolicy {
  readonly policy: string;
  readonly error?: string;
  readonly single?: MicroTiming;
  readonly batch16?: MicroTiming;
}

export type Microbench = { policies: MicroPolicy[] } | { error: string };

export function runMicrobench(cfg: Config, trace: Trace): Microbench {
  const avgShare = averageShares(trace);
  const args = [
    join(root, 'bench', 'build-alloc-bench.mjs'),
    '--pool-bytes', String(cfg.poolBytes),
    '--slab-bytes', String(cfg.slabBytes),
    '--page-bytes', String(cfg.pageBytes),
    '--map-cost-ns', String(cfg.mapCostNs),
    '--seed', String(cfg.seed),
    '--rounds', String(cfg.microbench.rounds),
    '--repeats', String(cfg.microbench.repeats),
  ];
  MODELS.forEach((m, i) => {
    const g = m.geometry;
    args.push('--model', [m.name, g.tokensPerBlock, g.layers, g.kvHeads, g.headDim, g.format, g.scaleBytes ?? 0, avgShare[i] ?? 0].join(','));
  });
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) return { error: `kv_alloc_bench failed (${r.error?.message ?? `exit ${String(r.status)}`})` };
  try {
    return JSON.parse(r.stdout) as { policies: MicroPolicy[] };
  } catch {
    return { error: `kv_alloc_bench printed no JSON: ${r.stdout.slice(0, 200)}` };
  }
}
