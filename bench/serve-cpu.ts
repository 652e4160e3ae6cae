/**
 * Serving benchmark on this machine's CPU: one model in three precisions co-located on one
 * device, a Poisson workload at rising rates, the FineServe policy (shared KV Slab, SLO-aware
 * local scheduler) against static KV partitions + FCFS (vLLM-style), both measured in the same
 * process run on the same arrivals with the same SLOs. Reports SLO attainment and token
 * throughput per policy and their ratio at each rate. Not a test.
 *
 *   node --import tsx bench/serve-cpu.ts [--model FILE] [--rates 1,2,3,4] [--seconds 30] [--threads N] [--out FILE]
 *
 * Default model: the demo's generated Llama (768 wide, 4 layers, 8k vocabulary, f16), made once
 * into the user cache. Writes bench/results/serve-cpu.json and prints one summary line.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';

import { demoModel, formatComparison } from '../lib/cli-demo.js';
import { calibrate, type ComparisonSetup, type PolicyRun, runPolicy, workload } from '../lib/policy-comparison.js';
import { addonIdentity, ForeignLoad } from './engine-cpu/machine.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    rates: { type: 'string', default: '1,2,3,4,6' },
    seconds: { type: 'string', default: '30' },
    threads: { type: 'string' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: 'bench/results/serve-cpu.json' },
  },
});
const rates = values.rates.split(',').map(Number);
const seconds = Number(values.seconds);
const threads = values.threads === undefined ? availableParallelism() : Number(values.threads);
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const root = new URL('..', import.meta.url).pathname;

const source = values.model ?? (await demoModel(log));
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

const points = [];
for (const rate of rates) {
  const arrivals = workload(setup, rate, seconds * 1000, Number(values.seed));
  const runs: PolicyRun[] = [];
  const load = new ForeignLoad();
  for (const policy of ['fineserve', 'static-fcfs'] as const) runs.push(await runPolicy(policy, setup, calibration, arrivals, rate));
  const [ours, base] = runs as [PolicyRun, PolicyRun];
  const ratio = (a: number, b: number): number | null => (b > 0 ? a / b : null);
  const point = {
    rate,
    requests: arrivals.length,
    foreignLoadCores: load.cores() ?? null,
    fineserve: ours.report,
    staticFcfs: base.report,
    slab: { fineserve: ours.device, staticFcfs: base.device },
    ratio: {
      attainment: ratio(ours.report.sloAttainment, base.report.sloAttainment),
      throughput: ratio(ours.report.tokensPerSecond, base.report.tokensPerSecond),
      goodput: ratio(ours.report.goodTokensPerSecond, base.report.goodTokensPerSecond),
    },
  };
  points.push(point);
  log(`rate ${rate}: attainment ${(ours.report.sloAttainment * 100).toFixed(1)}% vs ${(base.report.sloAttainment * 100).toFixed(1)}%, tok/s ${ours.report.tokensPerSecond.toFixed(1)} vs ${base.report.tokensPerSecond.toFixed(1)}`);
  log(formatComparison(calibration, runs));
}

const out = {
  bench: 'serve-cpu',
  date: new Date().toISOString(),
  machine: { cpu: cpus()[0]?.model, cores: availableParallelism(), threads },
  addon: addonIdentity(root),
  model: source,
  seconds,
  calibration,
  points,
};
mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(values.out, `${JSON.stringify(out, null, 2)}\n`);
const fmt = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(2)}x`);
console.log(
  `serve-cpu: fineserve/static-fcfs attainment ${points.map((p) => `${p.rate}/s ${fmt(p.ratio.attainment)}`).join(', ')}; ` +
    `throughput ${points.map((p) => fmt(p.ratio.throughput)).join(', ')} -> ${values.out}`,
);
