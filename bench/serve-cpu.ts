/**
 * Serving benchmark on this machine's CPU: one model in three precisions co-located on one
 * device, a Poisson workload at rising rates, the FineServe policy (shared KV Slab, SLO-aware
 * local scheduler) against static KV partitions + FCFS (vLLM-style), both measured in the same
 * process run on the same arrivals with the same SLOs. Reports SLO attainment and token
 * throughput per policy and their ratio at each rate. Not a test.
 *
 *   node --import tsx bench/serve-cpu.ts [--model FILE] [--rates 1,2,3,4,6] [--seconds 20] [--reps 3] [--threads N] [--out FILE] [--smoke]
 *
 * --smoke: the stories260K fixture, one rate, 2 s, 1 rep, 1 thread, to build/serve-cpu-smoke.json:
 * checks the benchmark works (npm test). Exits non-zero when a rate served no tokens.
 *
 * Default model: the demo's generated Llama (768 wide, 4 layers, 8k vocabulary, f16), made once
 * into the user cache. Writes bench/results/serve-cpu.json (and -attainment.svg, -throughput.svg
 * charts beside it) and prints one summary line.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { demoModel, formatComparison } from '../lib/cli/demo.js';
import { calibrate, type ComparisonSetup, type PolicyRun, runPolicy, workload } from '../lib/sim/policy-comparison.js';
import { addonIdentity, ForeignLoad } from './engine-cpu/machine.js';
import { writeCharts } from './serve-cpu/charts.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    rates: { type: 'string', default: '1,2,3,4,6' },
    seconds: { type: 'string', default: '20' },
    threads: { type: 'string' },
    seed: { type: 'string', default: '1' },
    reps: { type: 'string', default: '3' },
    out: { type: 'string' },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke;
const rates = smoke ? [2] : values.rates.split(',').map(Number);
const seconds = smoke ? 2 : Number(values.seconds);
const reps = smoke ? 1 : Number(values.reps);
const threads = values.threads === undefined ? (smoke ? 1 : availableParallelism()) : Number(values.threads);
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const root = new URL('..', import.meta.url).pathname;
const outFile = resolve(root, values.out ?? (smoke ? 'build/serve-cpu-smoke.json' : 'bench/results/serve-cpu.json'));

const source = values.model ?? (smoke ? resolve(root, '../shared/fixtures/stories260K/stories260K.gguf') : await demoModel(log));
const setup: ComparisonSetup = {
  source,
  models: [
    { id: 'fp16', precision: 'fp16' },
    { id: 'w8a8', precision: 'w8a8' },
    { id: 'w4a16-kv4', precision: 'w4a16-kv4' },
  ],
  threads,
  slabBytes: 256 * 2 ** 20,
};
log(`bench serve-cpu: ${source}, ${threads} thread(s), rates ${rates.join(', ')} req/s, ${seconds} s each`);
const calibration = await calibrate(setup);
for (const c of calibration) log(`  ${c.model}: alone TTFT ${c.aloneTtftMs.toFixed(1)} ms (256-token prompt), TPOT ${c.aloneTpotMs.toFixed(2)} ms -> SLO ${c.slo.ttftMs.toFixed(0)} / ${c.slo.tpotMs.toFixed(1)} ms`);

// Each rate runs `reps` workloads (seeds seed, seed+1, ...), the two policies in alternating
// order, and reports medians: on a shared 2-core machine one run's noise is as large as the
// effect being measured.
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const summary = (rs: readonly PolicyRun[]) => ({
  sloAttainment: median(rs.map((r) => r.report.sloAttainment)),
  tokensPerSecond: median(rs.map((r) => r.report.tokensPerSecond)),
  goodTokensPerSecond: median(rs.map((r) => r.report.goodTokensPerSecond)),
});
const points = [];
for (const rate of rates) {
  const ours: PolicyRun[] = [];
  const base: PolicyRun[] = [];
  const foreign: (number | null)[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const arrivals = workload(setup, rate, seconds * 1000, Number(values.seed) + rep);
    const load = new ForeignLoad();
    const order = rep % 2 === 0 ? (['fineserve', 'static-fcfs'] as const) : (['static-fcfs', 'fineserve'] as const);
    for (const policy of order) (policy === 'fineserve' ? ours : base).push(await runPolicy(policy, setup, calibration, arrivals, rate));
    foreign.push(load.cores() ?? null);
    log(formatComparison(calibration, [ours.at(-1)!, base.at(-1)!]));
  }
  const a = summary(ours);
  const b = summary(base);
  const ratio = (x: number, y: number): number | null => (y > 0 ? x / y : null);
  const point = {
    rate,
    requests: ours.map((r) => r.report.models.reduce((n, m) => n + m.requests, 0)),
    foreignLoadCores: foreign,
    fineserve: a,
    staticFcfs: b,
    ratio: { attainment: ratio(a.sloAttainment, b.sloAttainment), throughput: ratio(a.tokensPerSecond, b.tokensPerSecond), goodput: ratio(a.goodTokensPerSecond, b.goodTokensPerSecond) },
    runs: { fineserve: ours.map((r) => ({ report: r.report, slab: r.device })), staticFcfs: base.map((r) => ({ report: r.report, slab: r.device })) },
  };
  points.push(point);
  log(`rate ${rate}: attainment ${(a.sloAttainment * 100).toFixed(1)}% vs ${(b.sloAttainment * 100).toFixed(1)}%, tok/s ${a.tokensPerSecond.toFixed(1)} vs ${b.tokensPerSecond.toFixed(1)}, within SLO ${a.goodTokensPerSecond.toFixed(1)} vs ${b.goodTokensPerSecond.toFixed(1)} (medians of ${reps})`);
}

const out = {
  bench: 'serve-cpu',
  date: new Date().toISOString(),
  machine: { cpu: cpus()[0]?.model, cores: availableParallelism(), threads },
  addon: addonIdentity(root),
  model: source,
  seconds,
  reps,
  calibration,
  points,
};
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, `${JSON.stringify(out, null, 2)}\n`);
writeCharts(out, outFile.replace(/\.json$/, ''));
const fmt = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(2)}x`);
console.log(
  `serve-cpu: fineserve/static-fcfs attainment ${points.map((p) => `${p.rate}/s ${fmt(p.ratio.attainment)}`).join(', ')}; ` +
    `throughput ${points.map((p) => fmt(p.ratio.throughput)).join(', ')}; within-SLO throughput ${points.map((p) => fmt(p.ratio.goodput)).join(', ')} -> ${outFile}`,
);
const idle = points.filter((p) => !(p.fineserve.tokensPerSecond > 0 && p.staticFcfs.tokensPerSecond > 0));
if (idle.length > 0) {
  console.error(`serve-cpu: FAILED: no tokens served at ${idle.map((p) => `${p.rate}/s`).join(', ')}`);
  process.exitCode = 1;
}
