/**
 * The batch-scaling part of bench:serve-memory on its own, as an A/B of one environment switch in
 * one process: decode step time and tokens/s against batch size for one precision of the 4-layer
 * demo model, with the switch off and on, alternating in rounds, at each thread count. The
 * switches are read by the addon at every call, so both sides run the same build:
 * FINESERVE_GEMM_PACK (W8A8's packed integer GEMM, Q8_0/Q4_0's repacked tiles) by default.
 *
 *   node --import tsx bench/serve-memory/batch-scaling-ab.ts [--precision w8a8] [--threads 1,2]
 *       [--batches 1,2,4,8,16,32] [--rounds 3] [--env FINESERVE_GEMM_PACK] [--out FILE] [--smoke]
 *
 * Reports the median step time of the rounds per (threads, side, batch) and after/before ratios.
 * --smoke: the stories260K fixture, batches 1 and 2, one round, one thread. Not a test.
 * @module
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { demoModel } from '../../lib/cli/demo.js';
import type { PrecisionName } from '../../lib/precision.js';
import { addonIdentity } from '../engine-cpu/machine.js';
import { median } from '../engine-cpu/measure.js';
import { batchScaling, type BatchPoint } from './batch-scaling.js';

const { values } = parseArgs({
  options: {
    precision: { type: 'string', default: 'w8a8' },
    threads: { type: 'string' },
    batches: { type: 'string' },
    rounds: { type: 'string' },
    env: { type: 'string', default: 'FINESERVE_GEMM_PACK' },
    out: { type: 'string' },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke;
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const root = new URL('../..', import.meta.url).pathname;
const list = (s: string | undefined, d: number[]): number[] => (s === undefined ? d : s.split(',').map(Number));
const threadCounts = list(values.threads, smoke ? [1] : [1, 2]).map((t) => Math.min(t, availableParallelism()));
const batches = list(values.batches, smoke ? [1, 2] : [1, 2, 4, 8, 16, 32]);
const rounds = Number(values.rounds ?? (smoke ? 1 : 3));
const precision = values.precision as PrecisionName;
const envName = values.env;
const outFile = resolve(root, values.out ?? (smoke ? 'build/batch-scaling-ab-smoke.json' : `bench/results/batch-scaling-${precision}.json`));
const fixture = resolve(root, '../shared/fixtures/stories260K/stories260K.gguf');
if (smoke && !existsSync(fixture)) {
  console.error(`batch-scaling-ab: FAILED: --smoke needs the stories260K fixture at ${fixture}`);
  process.exit(1);
}
const source = smoke ? fixture : await demoModel(log);
const promptTokens = smoke ? 16 : 80; // bench:serve-memory's scaled prompt median
const outputTokens = smoke ? 8 : 48;


type Side = 'before' | 'after';
const raw: { threads: number; side: Side; round: number; points: BatchPoint[] }[] = [];
const load0 = loadavg()[0];
log(`batch-scaling-ab: ${precision}, ${envName}=0 (before) vs unset (after), threads ${threadCounts.join('/')}, batches ${batches.join('/')}, ${rounds} round(s); load average ${load0?.toFixed(1)}`);
const saved = process.env[envName];
try {
  for (const threads of threadCounts) {
    for (let round = 0; round < rounds; round++) {
      // Alternate which side goes first, so a drift in the machine's load hits both alike.
      const order: Side[] = round % 2 === 0 ? ['before', 'after'] : ['after', 'before'];
      for (const side of order) {
        if (side === 'before') process.env[envName] = '0';
        else if (saved === undefined) delete process.env[envName];
        else process.env[envName] = saved;
        const points = await batchScaling({ source, precision, threads, batches, promptTokens, outputTokens });
        raw.push({ threads, side, round, points });
        log(`  ${threads}t ${side.padEnd(6)} round ${round}: ${points.map((p) => `B${p.batch} ${p.stepMs.toFixed(2)} ms`).join(', ')}`);
      }
    }
  }
} finally {
  if (saved === undefined) delete process.env[envName];
  else process.env[envName] = saved;
}

const summary = threadCounts.flatMap((threads) =>
  batches.map((batch) => {
    const step = (side: Side): number => median(raw.filter((r) => r.threads === threads && r.side === side).map((r) => r.points.find((p) => p.batch === batch)!.stepMs));
    const before = step('before');
    const after = step('after');
    return { threads, batch, beforeStepMs: before, afterStepMs: after, beforeTokensPerSecond: (1000 * batch) / before, afterTokensPerSecond: (1000 * batch) / after, speedup: before / after };
  }),
);
for (const s of summary) {
  const one = summary.find((x) => x.threads === s.threads && x.batch === batches[0])!;
  log(`  ${s.threads}t B${String(s.batch).padEnd(3)} step ${s.beforeStepMs.toFixed(2)} -> ${s.afterStepMs.toFixed(2)} ms (${s.speedup.toFixed(2)}x); tok/s vs batch ${batches[0]}: ${(s.beforeTokensPerSecond / one.beforeTokensPerSecond).toFixed(2)}x -> ${(s.afterTokensPerSecond / one.afterTokensPerSecond).toFixed(2)}x`);
}
const out = {
  bench: 'batch-scaling-ab',
  command: ['node --import tsx bench/serve-memory/batch-scaling-ab.ts', ...process.argv.slice(2)].join(' '),
  date: new Date().toISOString(),
  machine: { cpu: cpus()[0]?.model, cores: availableParallelism(), loadAverageAtStart: load0, loadAverageAtEnd: loadavg()[0] },
  addon: addonIdentity(root),
  setup: { source: String(source), precision, promptTokens, outputTokens, batches, rounds, before: `${envName}=0`, after: `${envName} unset` },
  summary,
  raw,
};
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, `${JSON.stringify(out, null, 2)}\n`);
const bad = summary.filter((s) => !(s.afterStepMs > 0 && s.beforeStepMs > 0));
console.log(`batch-scaling-ab: ${summary.map((s) => `${s.threads}t B${s.batch} ${s.speedup.toFixed(2)}x`).join(', ')} -> ${outFile}`);
if (bad.length > 0) {
  console.error(`batch-scaling-ab: FAILED: no step time for ${bad.map((s) => `${s.threads}t B${s.batch}`).join(', ')}`);
  process.exitCode = 1;
}
