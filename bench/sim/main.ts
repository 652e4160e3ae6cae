/**
 * Reproduction benchmark: FineServe (ours) against the reference FineServe rules (strict, and with
 * the KV floor), Prism-style, MuxServe-style and static partitions, plus ablations, in the
 * simulator on the paper's mixes (bench/sim/scenarios.ts). Every system is placed by its own rules
 * and measured in the same run; numbers are mean ± sd over seeds. Writes bench/results/sim[-quick].json,
 * SVG charts and Vega-Lite specs, and prints per-rate ratios against every baseline.
 *
 *   npm run bench:sim            the sweep (2, 4, 8 GPUs; 5 seeds, side sweeps 3; about 4 minutes)
 *   npm run bench:sim -- --gpus16 --seeds N   adds 16 GPUs, changes the seeds (a bigger machine)
 *   npm run bench:sim -- --quick 2 and 4 GPUs, 2 seeds, shorter runs
 *   npm run bench:sim -- --smoke 2 GPUs, two rates, one seed, 5 s runs: checks it works (npm test),
 *                                to build/sim-smoke/ (--out DIR for another folder)
 *   npm run bench:sim -- --latency-fit   the roofline step-latency fit and its hold-out errors
 *                                (bench/sim/latency-fit.ts) to bench/results/latency-fit.json
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

import { SYSTEM_NAMES, SYSTEM_NOTES, type SystemName } from '../../lib/sim/systems.js';
import { lineChart, vegaLiteSpec, type Series } from './charts.js';
import { buildJobs, DEFAULT_SLO_SCALE, LONG_RUN_MS, LONG_RUN_SYSTEMS, MAIN_SYSTEMS, sweepSize, TPOT_SLO_SCALE, type Job } from './jobs.js';
import { curve, ratios, sustained, type CurvePoint } from './report.js';
import type { RunSummary } from './run-one.js';
import { LENGTHS, MIX_GPUS, scenarioModels, SHIFT_DETECT_MS, SHIFTED_MODEL } from './scenarios.js';

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, smoke: { type: 'boolean', default: false }, out: { type: 'string' }, gpus16: { type: 'boolean', default: false }, seeds: { type: 'string' }, 'latency-fit': { type: 'boolean', default: false } },
});
if (args['latency-fit']) {
  const { main } = await import('./latency-fit.js');
  process.exit(main(resolve(fileURLToPath(new URL('../..', import.meta.url)), args.out ?? 'bench/results')));
}
const mode = args.smoke ? 'smoke' : args.quick ? 'quick' : 'full';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OUT = resolve(ROOT, args.out ?? (mode === 'smoke' ? 'build/sim-smoke' : 'bench/results'));
const size = sweepSize(mode, { gpus16: args.gpus16, ...(args.seeds !== undefined && { seeds: Number(args.seeds) }) });
const jobs = buildJobs(size);

async function runAll(): Promise<RunSummary[]> {
  const results: RunSummary[] = new Array(jobs.length);
  const threads = Math.max(1, Math.min(availableParallelism(), jobs.length));
  // Biggest scenarios first so the pool does not end on one long run.
  const queue = [...jobs].sort((a, b) => b.scenario.gpus * b.scenario.rate - a.scenario.gpus * a.scenario.rate);
  let done = 0;
  await Promise.all(
    Array.from({ length: threads }, () =>
      new Promise<void>((resolveRun, reject) => {
        const w = new Worker(new URL('./worker-entry.mjs', import.meta.url));
        const next = (): void => {
          const job = queue.shift();
          w.postMessage(job === undefined ? null : { index: job.index, scenario: job.scenario, system: job.system });
        };
        w.on('message', (m: { index: number; summary: RunSummary }) => {
          results[m.index] = m.summary;
          done++;
          if (process.stderr.isTTY) process.stderr.write(`\r${done}/${jobs.length} runs`);
          next();
        });
        w.on('error', reject);
        w.on('exit', () => resolveRun());
        next();
      }),
    ),
  );
  if (process.stderr.isTTY) process.stderr.write('\n');
  return results;
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
const suffix = mode === 'smoke' ? '-smoke' : mode === 'quick' ? '-quick' : '';
const part = (p: Job['part']): RunSummary[] => jobs.filter((j) => j.part === p).map((j) => runs[j.index]!);
const BASELINES: SystemName[] = MAIN_SYSTEMS.filter((s) => s !== 'fineserve');
const ABLATIONS: SystemName[] = ['fineserve', 'ours-fused', 'prism', 'ablation-kvslab', 'ablation-global', 'ablation-local'];
const pct = (x: number): string => `${(100 * x).toFixed(1)}`;
const fmtStat = (p: CurvePoint, k: 'attainment' | 'throughput'): string => (k === 'attainment' ? `${pct(p.attainment.mean)}±${pct(p.attainment.sd)}` : `${p.throughput.mean.toFixed(0)}±${p.throughput.sd.toFixed(0)}`);

const chart = (file: string, title: string, x: string, y: string, series: Series[], yMax?: number): void => {
  writeFileSync(join(OUT, `${file}.svg`), lineChart(title, x, y, series, yMax));
  writeFileSync(join(OUT, `${file}.vl.json`), vegaLiteSpec(title, x, y, series, yMax));
};

const mixes: Record<string, unknown>[] = [];
const lines: string[] = [];
for (const mix of size.mixes) {
  const g = MIX_GPUS[mix];
  const curveRuns = part('curves').filter((r) => r.mix === mix);
  const curves = Object.fromEntries(SYSTEM_NAMES.map((s) => [s, curve(curveRuns, s, (r) => r.rate)])) as Record<SystemName, CurvePoint[]>;
  const sust = (t: number) => Object.fromEntries(SYSTEM_NAMES.map((s) => [s, sustained(curveRuns, s, t)]));
  const at99 = sust(0.99);
  const at90 = sust(0.9);
  const vs = Object.fromEntries(BASELINES.map((b) => [b, ratios(curves.fineserve, curves[b])]));
  const sustainedRatio = (t: Record<string, { median: number }>) =>
    Object.fromEntries(BASELINES.map((b) => [b, t[b]!.median > 0 ? t['fineserve']!.median / t[b]!.median : null]));
  const sloRuns = part('sloScales').filter((r) => r.mix === mix);
  const sloScales = [...new Set(sloRuns.map((r) => r.rate))].map((rate) => ({
    rate,
    curves: Object.fromEntries(MAIN_SYSTEMS.map((s) => [s, curve([...sloRuns, ...curveRuns].filter((r) => r.rate === rate), s, (r) => r.sloScale)])),
  }));
  const skewRuns = part('skew').filter((r) => r.mix === mix);
  const skew = Object.fromEntries(MAIN_SYSTEMS.map((s) => [s, curve(skewRuns, s, (r) => r.zipf)]));
  const longRuns = part('long').filter((r) => r.mix === mix);
  const long = longRuns.length > 0 ? Object.fromEntries(MAIN_SYSTEMS.map((s) => [s, curve(longRuns, s, (r) => r.rate)])) : undefined;
  const tpotRuns = part('longTpot').filter((r) => r.mix === mix);
  const longTpot = tpotRuns.length > 0 ? Object.fromEntries(MAIN_SYSTEMS.map((s) => [s, curve(tpotRuns, s, (r) => r.rate)])) : undefined;
  const shiftRuns = part('depthShift').filter((r) => r.mix === mix);
  const depthShift = shiftRuns.length > 0 ? Object.fromEntries((['fineserve', 'ours-layer-pools', 'prism'] as const).map((s) => [s, curve(shiftRuns, s, (r) => r.rate)])) : undefined;
  const rsRuns = part('rateShift').filter((r) => r.mix === mix);
  const rateShift =
    rsRuns.length > 0
      ? (['fineserve', 'prism'] as const).flatMap((system) =>
          (system === 'fineserve' ? (['once', 'online', 'overlap'] as const) : (['once', 'online'] as const)).map((mode) => {
            const runsOf = rsRuns.filter((r) => r.system === system && r.rateShift === mode);
            const rates = [...new Set(runsOf.map((r) => r.rate))].sort((a, b) => a - b);
            return {
              system,
              mode,
              points: rates.map((rate) => {
                const at = runsOf.filter((r) => r.rate === rate);
                const mean = (f: (r: RunSummary) => number): number => at.reduce((a, r) => a + f(r), 0) / at.length;
                const migrations = at.flatMap((r) => r.migrations ?? []);
                return {
                  rate,
                  before: mean((r) => r.phaseAttainment![0]),
                  after: mean((r) => r.phaseAttainment![1]),
                  attainment: mean((r) => r.sloAttainment),
                  throughput: mean((r) => r.tokenThroughput),
                  movesPerRun: migrations.length / at.length,
                  meanMigrationMs: migrations.length === 0 ? 0 : migrations.reduce((a, m) => a + m.readyAtMs - (at[0]!.durationMs / 2 + SHIFT_DETECT_MS), 0) / migrations.length,
                  seeds: at.length,
                };
              }),
            };
          }),
        )
      : undefined;
  const lrRuns = part('longRun').filter((r) => r.mix === mix);
  const longRun = lrRuns.length > 0 ? Object.fromEntries(LONG_RUN_SYSTEMS.map((s) => [s, curve(lrRuns, s, (r) => r.rate)])) : undefined;
  const longRunVs = longRun === undefined ? undefined : Object.fromEntries(LONG_RUN_SYSTEMS.filter((s) => s !== 'fineserve').map((b) => [b, ratios(longRun['fineserve']!, longRun[b]!)]));
  const mapRuns = part('mapCost').filter((r) => r.mix === mix);
  const mapCost = mapRuns.length > 0 ? curve(mapRuns, 'prism', (r) => r.mapCostMs ?? 0) : undefined;
  mixes.push({
    mix,
    gpus: g,
    models: scenarioModels(mix).map((m) => `${m.family} ${m.precision}`),
    curves,
    sustainedRateAt99: Object.fromEntries(Object.entries(at99).map(([k, v]) => [k, v.median])),
    sustainedAt99: at99,
    sustainedAt90: at90,
    oursOverBaselineSustained99: sustainedRatio(at99),
    oursOverBaselineSustained90: sustainedRatio(at90),
    oursOverBaselinePerRate: vs,
    sloScales,
    skew,
    ...(long !== undefined && { long }),
    ...(longTpot !== undefined && { longTpot }),
    ...(mapCost !== undefined && { prismMapCost: mapCost }),
    ...(longRun !== undefined && { longRun, oursOverBaselineLongRun: longRunVs }),
    ...(depthShift !== undefined && { depthShift }),
    ...(rateShift !== undefined && { rateShift }),
  });

  const ser = (systems: readonly SystemName[], k: 'attainment' | 'throughput'): Series[] =>
    systems.map((s) => ({ name: s, points: curves[s].map((p) => [p.x, p[k].mean] as const) }));
  chart(`sim${suffix}-${mix}-attainment`, `SLO attainment, ${mix} on ${g} H100s (SLO scale ${DEFAULT_SLO_SCALE}; rejected plans count 0)`, 'total request rate (req/s)', 'SLO attainment', ser(MAIN_SYSTEMS, 'attainment'), 1);
  chart(`sim${suffix}-${mix}-throughput`, `Token throughput, ${mix} on ${g} H100s`, 'total request rate (req/s)', 'output tokens/s', ser(MAIN_SYSTEMS, 'throughput'));
  chart(`sim${suffix}-${mix}-ablation`, `Ablation: one component on top of Prism-style, and ours without the prefill/decode split, ${mix}`, 'total request rate (req/s)', 'SLO attainment', ser(ABLATIONS, 'attainment'), 1);

  lines.push(`== ${mix} (${g} GPUs): attainment % and tokens/s, mean ± sd over ${size.seeds(mix).length} seed(s); 'R' = plan rejected in some seed`);
  lines.push(['rate'.padStart(6), ...MAIN_SYSTEMS.map((s) => s.padStart(22))].join(' '));
  for (const p of curves.fineserve) {
    const cell = (s: SystemName): string => {
      const q = curves[s].find((c) => c.x === p.x)!;
      return `${fmtStat(q, 'attainment')} ${fmtStat(q, 'throughput')}${q.rejected > 0 ? 'R' : ''}`.padStart(22);
    };
    lines.push([String(p.x).padStart(6), ...MAIN_SYSTEMS.map(cell)].join(' '));
  }
  const sr = (t: typeof at99) => MAIN_SYSTEMS.map((s) => `${s} ${t[s]!.median.toFixed(1)} [${t[s]!.min.toFixed(1)}–${t[s]!.max.toFixed(1)}]`).join(', ');
  lines.push(`sustained rate at 99 %: ${sr(at99)}`);
  lines.push(`sustained rate at 90 %: ${sr(at90)}`);
  if (long !== undefined && longTpot !== undefined) {
    const row = (c: Record<string, CurvePoint[]>) => MAIN_SYSTEMS.map((s) => `${s} ${c[s]!.map((p) => `${p.x}: ${pct(p.attainment.mean)}`).join(', ')}`).join('; ');
    lines.push(`long prompts, attainment % (TTFT SLO only): ${row(long)}`);
    lines.push(`long prompts with TPOT SLOs (${TPOT_SLO_SCALE} x batch-1 decode step), attainment %: ${row(longTpot)}`);
  }
  if (longRun !== undefined && longRunVs !== undefined) {
    lines.push(
      `long prompts, ${LONG_RUN_MS / 1000} s runs, attainment % / tokens/s (ours over each: attainment x / throughput x): ` +
        longRun['fineserve']!.map((p) => `${p.x}: ours ${pct(p.attainment.mean)} / ${p.throughput.mean.toFixed(0)}; ${Object.entries(longRunVs).map(([b, v]) => { const q = longRun[b]!.find((c) => c.x === p.x)!; const r = v.find((c) => c.x === p.x)!; return `${b} ${pct(q.attainment.mean)} / ${q.throughput.mean.toFixed(0)} (${(r.attainment ?? 0).toFixed(2)}x / ${(r.throughput ?? 0).toFixed(2)}x)`; }).join(', ')}`).join('; '),
    );
  }
  if (depthShift !== undefined) {
    lines.push(
      `depth shift (long prompts, demand 32 -> 64/80 layers halfway), attainment % / tokens/s: ` +
        Object.entries(depthShift).map(([s, c]) => `${s} ${c.map((p) => `${p.x}: ${pct(p.attainment.mean)} / ${p.throughput.mean.toFixed(0)}`).join(', ')}`).join('; '),
    );
  }
  if (rateShift !== undefined) {
    lines.push(`rate shift (${SHIFTED_MODEL} 0.5x -> 6x halfway), attainment % before / after the shift, moves per run, mean migration s:`);
    for (const s of rateShift) lines.push(`  ${s.system} ${s.mode}: ${s.points.map((p) => `${p.rate}: ${pct(p.before)} / ${pct(p.after)} (${p.movesPerRun.toFixed(1)} moves, ${(p.meanMigrationMs / 1000).toFixed(1)} s)`).join(', ')}`);
  }
  lines.push(`extrapolated share of iterations (ours, by rate): ${curves.fineserve.map((p) => `${p.x}: ${pct(p.extrapolatedShare)} %`).join(', ')}`);
}

const result = {
  benchmark: 'sim',
  mode,
  quick: mode !== 'full',
  smoke: mode === 'smoke',
  generatedAt: new Date().toISOString(),
  wallSeconds: wallS,
  threads: Math.min(availableParallelism(), jobs.length),
  config: { ...size, seeds: Object.fromEntries(size.mixes.map((m) => [m, size.seeds(m)])), durationMs: Object.fromEntries(size.mixes.map((m) => [m, size.durationMs(m)])), defaultSloScale: DEFAULT_SLO_SCALE, lengths: LENGTHS, cv: 1, interference: 'work', kvcachedMapCostMs: 'default 0.52/64 (kvcached map benchmark), swept in prismMapCost' },
  systems: SYSTEM_NOTES,
  // Kept for tools that read the old layout: per mix, each system's median sustained rate at 99 %.
  headline: mixes.map((m) => ({ mix: m['mix'], gpus: m['gpus'], sustainedRateAt99: m['sustainedRateAt99'], oursOverBaselineSustained99: m['oursOverBaselineSustained99'] })),
  mixes,
  runs,
};
writeFileSync(join(OUT, `sim${suffix}.json`), `${JSON.stringify(result, null, 1)}\n`);
for (const l of lines) console.log(l);
console.log(`${runs.length} simulations in ${wallS.toFixed(1)} s; wrote ${join(OUT, `sim${suffix}.json`)} and sim${suffix}-*.svg / *.vl.json`);
