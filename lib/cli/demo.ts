/**
 * `fineserve demo`: the README's main job. Makes (and caches) a generated Llama-shaped model, or
 * takes `--model`, loads it in three precisions on one device, replays one Poisson workload
 * through the FineServe policy and through the static-partition FCFS baseline, and prints per
 * model SLO attainment, TTFT/TPOT p50/p99 and tok/s side by side, plus slab occupancy by format.
 * @module
 */
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { generateModel } from '../generate.js';
import { calibrate, type Calibration, type ComparisonSetup, type PolicyRun, runPolicy, workload } from '../sim/policy-comparison.js';
import type { PrecisionName } from '../precision.js';

/** Usage lines of the command, for the main help text. */
export const DEMO_USAGE = `  demo [--model FILE.gguf|HF-DIR] [--rate R] [--seconds S] [--threads N] [--precisions a,b,c]
                     serve one model in three precisions on this machine under a Poisson workload,
                     FineServe policy vs static partitions + FCFS (default: a generated model, cached)`;

const DEFAULT_PRECISIONS: readonly PrecisionName[] = ['fp16', 'w8a8', 'w4a16-kv4'];

function cacheDir(): string {
  return join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'fineserve');
}

/** The demo's generated model: Llama-shaped (768 wide, 4 layers, 8k vocabulary), f16, made once. */
export async function demoModel(log: (line: string) => void): Promise<string> {
  const dir = cacheDir();
  const path = join(dir, 'demo-llama-4l-v8k-f16.gguf');
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  log(`generating the demo model at ${path} (once)`);
  await generateModel({ shape: 'llama-100m', layers: 4, vocab: 8192, dtype: 'f16', format: 'gguf', out: path, seed: 7 });
  return path;
}

/** A progress bar on a terminal; elsewhere (CI logs, pipes) a line at every quarter. */
function progress(label: string): (done: number, total: number) => void {
  const tty = process.stderr.isTTY;
  let quarter = 0;
  return (done, total) => {
    if (tty) {
      const width = 30;
      const filled = Math.round((done / Math.max(total, 1)) * width);
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`);
    } else if (done * 4 >= (quarter + 1) * total) {
      quarter = Math.floor((done * 4) / total);
      process.stderr.write(`${label} ${done}/${total} requests done\n`);
    }
  };
}

const fmt = (x: number | undefined, digits = 0): string => (x === undefined ? '-' : x.toFixed(digits));
const MiB = 2 ** 20;

/** The side-by-side table. */
export function formatComparison(calibration: readonly Calibration[], runs: readonly PolicyRun[]): string {
  const lines: string[] = [];
  lines.push('model         SLO ttft/tpot ms   policy        attain   ttft p50/p99 ms   tpot p50/p99 ms   tok/s   preempt');
  for (const c of calibration) {
    for (const r of runs) {
      const m = r.report.models.find((x) => x.model === c.model);
      if (m === undefined) continue;
      lines.push(
        `${c.model.padEnd(13)} ${`${fmt(c.slo.ttftMs)}/${fmt(c.slo.tpotMs, 1)}`.padEnd(18)} ${r.policy.padEnd(13)} ${`${(m.sloAttainment * 100).toFixed(1)}%`.padStart(6)}   ${`${fmt(m.ttftP50Ms)}/${fmt(m.ttftP99Ms)}`.padEnd(17)} ${`${fmt(m.tpotP50Ms, 1)}/${fmt(m.tpotP99Ms, 1)}`.padEnd(17)} ${fmt(m.tokensPerSecond, 1).padStart(6)}   ${m.preemptions}`,
      );
    }
  }
  for (const r of runs) {
    lines.push(`${r.policy.padEnd(13)} all models: attainment ${(r.report.sloAttainment * 100).toFixed(1)}%, ${r.report.tokensPerSecond.toFixed(1)} tok/s (${r.report.goodTokensPerSecond.toFixed(1)} within SLO)`);
  }
  const [a, b] = runs;
  if (a !== undefined && b !== undefined && b.report.sloAttainment > 0 && b.report.tokensPerSecond > 0) {
    lines.push(`ratio ${a.policy}/${b.policy}: attainment ${(a.report.sloAttainment / b.report.sloAttainment).toFixed(2)}x, throughput ${(a.report.tokensPerSecond / b.report.tokensPerSecond).toFixed(2)}x`);
  }
  for (const r of runs) {
    const held = Object.entries(r.device.heldBytesByFormat).map(([f, v]) => `${f} ${((v ?? 0) / MiB).toFixed(1)} MiB`);
    const live = Object.entries(r.device.liveTokenBytesByFormat).map(([f, v]) => `${f} ${((v ?? 0) / MiB).toFixed(1)}`);
    lines.push(`slab at peak (${r.policy}): held ${held.join(', ') || 'none'}; live tokens ${live.join(', ') || 'none'} MiB; pool ${(r.device.slabBytes / MiB).toFixed(0)} MiB`);
  }
  return lines.join('\n');
}

/** Runs the command; returns the exit code (2 for bad usage). */
export async function demoCommand(args: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: { model: { type: 'string' }, rate: { type: 'string' }, seconds: { type: 'string' }, threads: { type: 'string' }, precisions: { type: 'string' }, json: { type: 'boolean' } },
      strict: true,
    }));
  } catch (err) {
    console.error(`fineserve demo: ${(err as Error).message}\n\n${DEMO_USAGE}`);
    return 2;
  }
  const num = (name: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const v = Number(text);
    if (!(v > 0) || !Number.isFinite(v)) throw new Error(`--${name} must be a positive number, got "${text}"`);
    return v;
  };
  let rate: number | undefined;
  let seconds: number;
  let threads: number | undefined;
  try {
    rate = num('rate', values.rate);
    seconds = num('seconds', values.seconds) ?? 20;
    threads = num('threads', values.threads);
  } catch (err) {
    console.error(`fineserve demo: ${(err as Error).message}`);
    return 2;
  }
  const precisions = (values.precisions?.split(',') ?? DEFAULT_PRECISIONS) as PrecisionName[];
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const source = values.model ?? (await demoModel(log));
  const setup: ComparisonSetup = {
    source,
    models: precisions.map((p) => ({ id: p, precision: p })),
    slabBytes: 256 * MiB,
    ...(threads === undefined ? {} : { threads }),
    onLoad: (id, f) => process.stderr.isTTY && process.stderr.write(`\rloading ${id} ${(f * 100).toFixed(0)}%   `),
  };
  log(`model ${source}; precisions ${precisions.join(', ')}; measuring each alone for the SLOs`);
  const calibration = await calibrate(setup);
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  // Default load: 0.7 median requests (64-token prompt, a quarter of the calibration's 256, then
  // 32 tokens) per its time alone, over all models: on a time-sliced CPU that is where the
  // baseline starts to miss its SLOs and the policies part (bench/serve-cpu.ts sweeps the rate).
  const alone = calibration.reduce((a, c) => a + c.aloneTtftMs / 4 + 32 * c.aloneTpotMs, 0) / calibration.length;
  const r = rate ?? Math.max(0.5, Math.round((1.4 * 1000) / alone) / 2);
  const arrivals = workload(setup, r, seconds * 1000, 1);
  log(`Poisson workload: ${arrivals.length} requests over ${seconds} s at ${r} req/s (prompts median 64, outputs median 32 tokens)`);
  const runs: PolicyRun[] = [];
  for (const policy of ['fineserve', 'static-fcfs'] as const) {
    runs.push(await runPolicy(policy, setup, calibration, arrivals, r, progress(policy.padEnd(12))));
  }
  console.log(values.json === true ? JSON.stringify({ calibration, runs }, null, 2) : formatComparison(calibration, runs));
  return 0;
}
