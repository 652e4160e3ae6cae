/**
 * Reproduction benchmark: FineServe (ours) against the reference FineServe rules, Prism-style,
 * MuxServe-style and static partitions, plus ablations, in the simulator at the paper's scale.
 * Writes bench/results/sim[-quick].json and SVG charts, and prints ratios measured in this run.
 *
 *   npm run bench:sim            full sweep (2, 4, 8, 16 GPUs)
 *   npm run bench:sim -- --quick 2 and 4 GPUs, fewer rates, shorter runs (< 1 minute)
 *   npm run bench:sim -- --smoke 2 GPUs, two rates, 5 s runs: checks it works (npm test), to
 *                                build/sim-smoke/ (--out DIR for another folder)
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

import { SYSTEM_NAMES, SYSTEM_NOTES, type SystemName } from '../../lib/sim/systems.js';
import { lineChart } from './charts.js';
import type { RunSummary } from './run-one.js';
import type { Scenario } from './scenarios.js';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, smoke: { type: 'boolean', default: false }, out: { type: 'string' } } });
const smoke = args.smoke;
const quick = args.quick || smoke;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OUT = resolve(ROOT, args.out ?? (smoke ? 'build/sim-smoke' : 'bench/results'));
const GPUS = smoke ? [2] : quick ? [2, 4] : [2, 4, 8, 16];
// Total request rate per GPU; the sweep crosses each system's saturation point.
const RATES_PER_GPU = smoke ? [6, 24] : quick ? [6, 12, 18, 24, 36] : [4, 8, 12, 16, 20, 24, 30, 40, 60];
const SLO_SCALES = smoke ? [10, 40] : quick ? [10, 40] : [5, 10, 20, 40];
const DEFAULT_SCALE = 40;
const SLO_SWEEP_RATE_PER_GPU = 16;
const DURATION_MS = smoke ? 5_000 : quick ? 30_000 : 60_000;
const SEED = 1;

type Job = { index: number; scenario: Scenario; system: SystemName };
const jobs: Job[] = [];
const add = (gpus: number, rate: number, sloScale: number): void => {
  for (const system of SYSTEM_NAMES) jobs.push({ index: jobs.length, scenario: { gpus, rate, sloScale, durationMs: DURATION_MS, seed: SEED }, system });
};
for (const g of GPUS) {
  for (const r of RATES_PER_GPU) add(g, r * g, DEFAULT_SCALE);
  for (const s of SLO_SCALES) if (s !== DEFAULT_SCALE) add(g, SLO_SWEEP_RATE_PER_GPU * g, s);
}

async function runAll(): Promise<RunSummary[]> {
  const results: RunSummary[] = new Array(jobs.length);
  const threads = Math.max(1, Math.min(availableParallelism(), jobs.length));
  // Biggest scenarios first so the pool does not end on one long run.
  const queue = [...jobs].sort((a, b) => b.scenario.gpus * b.scenario.rate - a.scenario.gpus * a.scenario.rate);
  let done = 0;
  await Promise.all(
    Array.from({ length: threads }, () =>
      new Promise<void>((resolve, reject) => {
        const w = new Worker(new URL('./worker-entry.mjs', import.meta.url));
        const next = (): void => {
          const job = queue.shift();
          if (job === undefined) {
            w.postMessage(null);
            return;
          }
          w.postMessage(job);
        };
        w.on('message', (m: { index: number; summary: RunSummary }) => {
          results[m.index] = m.summary;
          done++;
          if (process.stderr.isTTY) process.stderr.write(`\r${done}/${jobs.length} runs`);
          next();
        });
        w.on('error', reject);
        w.on('exit', () => resolve());
        next();
      }),
    ),
  );
  if (process.stderr.isTTY) process.stderr.write('\n');
  return results;
}

/** Highest rate at which attainment stays ≥ target at it and every lower swept rate, interpolated. */
function sustainedRate(points: readonly (readonly [number, number])[], target = 0.99): number {
  const pts = [...points].sort((a, b) => a[0] - b[0]);
  let last = 0;
  for (let i = 0; i < pts.length; i++) {
    const [x, y] = pts[i]!;
    if (y >= target) {
      last = x;
      continue;
    }
    if (i > 0) {
      const [xp, yp] = pts[i - 1]!;
      if (yp >= target) last = xp + ((x - xp) * (yp - target)) / (yp - y);
    }
    break;
  }
  return last;
}

const t0 = performance.now();
const runs = await runAll();
const missing = jobs.filter((j) => runs[j.index] === undefined);
if (missing.length > 0) {
  console.error(`bench:sim: ${missing.length} of ${jobs.length} simulations returned no result`);
  process.exit(1);
}
const wallS = (performance.now() - t0) / 1000;
mkdirSync(OUT, { recursive: true });
const suffix = smoke ? '-smoke' : quick ? '-quick' : '';
const series = (gpus: number, metric: 'sloAttainment' | 'tokenThroughput', by: 'rate' | 'sloScale', systems: readonly SystemName[]) =>
  systems.map((name) => ({
    name,
    points: runs
      .filter((r) => r.gpus === gpus && r.system === name && (by === 'rate' ? r.sloScale === DEFAULT_SCALE : r.rate === SLO_SWEEP_RATE_PER_GPU * gpus))
      .map((r) => [by === 'rate' ? r.rate : r.sloScale, r[metric]] as const),
  }));

const MAIN: SystemName[] = ['fineserve', 'reference', 'prism', 'muxserve', 'static'];
const ABL: SystemName[] = ['fineserve', 'prism', 'ablation-kvslab', 'ablation-global', 'ablation-local'];
const headline: Record<string, unknown>[] = [];
const lines: string[] = [];
for (const g of GPUS) {
  const att = series(g, 'sloAttainment', 'rate', SYSTEM_NAMES);
  const thr = series(g, 'tokenThroughput', 'rate', SYSTEM_NAMES);
  writeFileSync(join(OUT, `sim${suffix}-attainment-${g}gpu.svg`), lineChart(`SLO attainment, ${g} H100s (SLO scale ${DEFAULT_SCALE})`, 'total request rate (req/s)', 'SLO attainment', att.filter((s) => MAIN.includes(s.name)), 1));
  writeFileSync(join(OUT, `sim${suffix}-throughput-${g}gpu.svg`), lineChart(`Token throughput, ${g} H100s`, 'total request rate (req/s)', 'output tokens/s', thr.filter((s) => MAIN.includes(s.name))));
  writeFileSync(join(OUT, `sim${suffix}-ablation-${g}gpu.svg`), lineChart(`Ablation: one component on top of Prism-style, ${g} H100s`, 'total request rate (req/s)', 'SLO attainment', att.filter((s) => ABL.includes(s.name)), 1));
  writeFileSync(join(OUT, `sim${suffix}-sloscale-${g}gpu.svg`), lineChart(`SLO attainment vs SLO scale, ${g} H100s at ${SLO_SWEEP_RATE_PER_GPU * g} req/s`, 'SLO scale', 'SLO attainment', series(g, 'sloAttainment', 'sloScale', MAIN), 1));
  const get = (list: typeof att, name: SystemName) => list.find((s) => s.name === name)!.points;
  const ratioMax = (a: readonly (readonly [number, number])[], b: readonly (readonly [number, number])[]) => {
    let best = { rate: 0, ratio: 0 };
    for (const [x, y] of a) {
      const yb = b.find((p) => p[0] === x)?.[1] ?? 0;
      if (yb > 0 && y / yb > best.ratio) best = { rate: x, ratio: y / yb };
    }
    return best;
  };
  const attVsPrism = ratioMax(get(att, 'fineserve'), get(att, 'prism'));
  const thrVsPrism = ratioMax(get(thr, 'fineserve'), get(thr, 'prism'));
  const sustained = Object.fromEntries(SYSTEM_NAMES.map((n) => [n, sustainedRate(get(att, n))]));
  const refRate = sustained['reference']!;
  const row = {
    gpus: g,
    attainmentVsPrismMax: attVsPrism,
    throughputVsPrismMax: thrVsPrism,
    sustainedRateAt99: sustained,
    sustainedVsReference: refRate > 0 ? sustained['fineserve']! / refRate : null,
    sustainedVsPrism: sustained['prism']! > 0 ? sustained['fineserve']! / sustained['prism']! : null,
  };
  headline.push(row);
  lines.push(
    `${String(g).padStart(2)} GPUs: attainment vs prism up to ${attVsPrism.ratio.toFixed(2)}x (at ${attVsPrism.rate} req/s), ` +
      `throughput vs prism up to ${thrVsPrism.ratio.toFixed(2)}x (at ${thrVsPrism.rate} req/s); ` +
      `rate at 99% attainment: ours ${sustained['fineserve']!.toFixed(1)}, reference ${refRate.toFixed(1)}` +
      (row.sustainedVsReference === null ? '' : ` (${row.sustainedVsReference.toFixed(2)}x)`) +
      `, prism ${sustained['prism']!.toFixed(1)}, muxserve ${sustained['muxserve']!.toFixed(1)}, static ${sustained['static']!.toFixed(1)}`,
  );
}
const result = {
  benchmark: 'sim',
  quick,
  smoke,
  generatedAt: new Date().toISOString(),
  wallSeconds: wallS,
  threads: Math.min(availableParallelism(), jobs.length),
  config: { gpus: GPUS, ratesPerGpu: RATES_PER_GPU, sloScales: SLO_SCALES, defaultSloScale: DEFAULT_SCALE, sloSweepRatePerGpu: SLO_SWEEP_RATE_PER_GPU, durationMs: DURATION_MS, seed: SEED, zipf: 1, cv: 1 },
  systems: SYSTEM_NOTES,
  headline,
  runs,
};
writeFileSync(join(OUT, `sim${suffix}.json`), `${JSON.stringify(result, null, 1)}\n`);
for (const l of lines) console.log(l);
console.log(`${runs.length} simulations in ${wallS.toFixed(1)} s; wrote ${join(OUT, `sim${suffix}.json`)} and sim${suffix}-*.svg`);
