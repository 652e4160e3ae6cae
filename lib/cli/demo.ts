/**
 * `fineserve demo`: the README's main job, in the memory-bound regime where the KV Slab pays off.
 * Makes (and caches) two generated Llama-shaped models (4 and 8 layers), or takes `--model` for
 * both, serves four of them side by side with KV caches in f16, FP8, INT8 and INT4 on a small KV
 * budget, replays one workload whose hot model rotates through FineServe (KV Slab, SLO-aware
 * scheduling) and through static partitions + FCFS (vLLM-style), and prints per model SLO
 * attainment, TTFT/TPOT p50/p99, tok/s and concurrent sequences side by side, the slab's
 * occupancy by KV format, and the attainment and throughput ratios.
 * @module
 */
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import cliProgress from 'cli-progress';

import { generateModel } from '../generate.js';
import { calibrateMemory, disposeModels, type MemoryCalibration, type MemoryRun, type MemorySetup, mixedLineup, POLICY_SYSTEMS, preloadModels, runMemorySystem, shiftingWorkload } from '../sim/memory-comparison.js';
import type { Calibration, PolicyRun } from '../sim/policy-comparison.js';

/** Usage lines of the command, for the main help text. */
export const DEMO_USAGE = `  demo [--model FILE.gguf|HF-DIR] [--rate R] [--seconds S] [--threads N] [--kv-mib M] [--context C] [--json]
                     four models with f16, FP8, INT8 and INT4 KV caches share a small KV budget on
                     this machine under a shifting load: FineServe (KV Slab) vs static partitions +
                     FCFS (default: two generated models, 4 and 8 layers, cached; --model serves one
                     file four ways). Prompts C/4..3C/4, outputs C/16..C/4 tokens (C default 256),
                     KV budget M MiB (default 5: a static quarter holds one longest request)`;

function cacheDir(): string {
  return join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'fineserve');
}

/**
 * The demo's generated model: Llama-shaped (llama-100m: 768 wide, 12 heads, 4 KV heads of 64),
 * `layers` deep (default 4), 8k vocabulary, f16, made once into the user cache.
 */
export async function demoModel(log: (line: string) => void, layers = 4): Promise<string> {
  const dir = cacheDir();
  const path = join(dir, `demo-llama-${layers}l-v8k-f16.gguf`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  log(`generating the demo model at ${path} (once)`);
  await generateModel({ shape: 'llama-100m', layers, vocab: 8192, dtype: 'f16', format: 'gguf', out: path, seed: 7 });
  return path;
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

/** A progress bar (cli-progress) on a terminal; elsewhere (CI logs, pipes) a line at every quarter. */
function progress(label: string, unit: string): { update: (done: number, total: number, detail?: string) => void; stop: () => void } {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar({ format: `${label.padEnd(12)} [{bar}] {value}/{total} ${unit} {detail}`, stream: process.stderr, hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic);
    let started = false;
    return {
      update: (done, total, detail = '') => {
        if (!started) bar.start(total, 0, { detail });
        started = true;
        bar.update(done, { detail });
      },
      stop: () => bar.stop(),
    };
  }
  let quarter = 0;
  return {
    update: (done, total) => {
      if (done * 4 < (quarter + 1) * total) return;
      quarter = Math.floor((done * 4) / total);
      process.stderr.write(`${label} ${done}/${total} ${unit} done\n`);
    },
    stop: () => undefined,
  };
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

/** The SLO table with each model's concurrent sequences beside it, the slab by format, and the ratios. */
export function formatMemoryComparison(calibration: readonly MemoryCalibration[], runs: readonly MemoryRun[]): string {
  const lines: string[] = [];
  lines.push('model     KV     SLO ttft/tpot ms   system        attain   ttft p50/p99 ms   tpot p50/p99 ms    tok/s  preempt   seqs mean/peak');
  for (const c of calibration) {
    for (const r of runs) {
      const m = r.report.models.find((x) => x.model === c.model);
      const seqs = r.concurrency[c.model];
      if (m === undefined) continue;
      lines.push(
        `${c.model.padEnd(9)} ${c.kvFormat.padEnd(6)} ${`${fmt(c.slo.ttftMs)}/${fmt(c.slo.tpotMs, 1)}`.padEnd(18)} ${r.system.label.padEnd(13)} ${pct(m.sloAttainment).padStart(6)}   ${`${fmt(m.ttftP50Ms)}/${fmt(m.ttftP99Ms)}`.padEnd(17)} ${`${fmt(m.tpotP50Ms, 1)}/${fmt(m.tpotP99Ms, 1)}`.padEnd(17)} ${fmt(m.tokensPerSecond, 1).padStart(6)}  ${String(m.preemptions).padStart(7)}   ${fmt(seqs?.meanRunning, 1)}/${fmt(seqs?.peakRunning)}`,
      );
    }
  }
  for (const r of runs) {
    const held = Object.entries(r.peakHeldBytesByFormat).map(([f, v]) => `${f} ${((v ?? 0) / MiB).toFixed(1)}`);
    const seqs = Object.values(r.concurrency).reduce((a, c) => a + c.meanRunning, 0);
    lines.push(`${r.system.label.padEnd(13)} KV held at peak by format (MiB): ${held.join(', ') || 'none'}; ${seqs.toFixed(1)} sequences running on average, ${r.meanLiveTokens.toFixed(0)} KV tokens live`);
  }
  for (const r of runs) {
    lines.push(`${r.system.label.padEnd(13)} all models: attainment ${pct(r.report.sloAttainment)}, ${r.report.tokensPerSecond.toFixed(1)} tok/s (${r.report.goodTokensPerSecond.toFixed(1)} within SLO), ${(r.report.wallMs / 1000).toFixed(1)} s`);
  }
  const [a, b] = runs;
  if (a !== undefined && b !== undefined) {
    const ratio = (x: number, y: number): string => (y > 0 ? `${(x / y).toFixed(2)}x` : x > 0 ? 'inf (baseline 0)' : 'n/a (both 0)');
    lines.push(`ratio ${a.system.label}/${b.system.label}: attainment ${ratio(a.report.sloAttainment, b.report.sloAttainment)}, throughput ${ratio(a.report.tokensPerSecond, b.report.tokensPerSecond)}`);
  }
  return lines.join('\n');
}

/** Runs the command; returns the exit code (2 for bad usage). */
export async function demoCommand(args: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: { model: { type: 'string' }, rate: { type: 'string' }, seconds: { type: 'string' }, threads: { type: 'string' }, 'kv-mib': { type: 'string' }, context: { type: 'string' }, json: { type: 'boolean' } },
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
  let kvMiB: number;
  let context: number;
  try {
    rate = num('rate', values.rate);
    seconds = num('seconds', values.seconds) ?? 12;
    threads = num('threads', values.threads);
    kvMiB = num('kv-mib', values['kv-mib']) ?? 5;
    context = Math.round(num('context', values.context) ?? 256);
    if (kvMiB < 4) throw new Error(`--kv-mib must be at least 4, got "${values['kv-mib']}"`);
    if (context < 64) throw new Error(`--context must be at least 64, got "${values.context}"`);
  } catch (err) {
    console.error(`fineserve demo: ${(err as Error).message}`);
    return 2;
  }
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const [four, eight] = values.model !== undefined ? [values.model, values.model] : [await demoModel(log), await demoModel(log, 8)];
  const loading = progress('loading', '%');
  const lineup = mixedLineup(four, eight);
  const files: MemorySetup = {
    models: lineup,
    kvBytes: kvMiB * MiB,
    ...(threads === undefined ? {} : { threads }),
    maxContext: context,
    input: { median: Math.round((3 * context) / 8), p95: Math.round((11 * context) / 16), min: Math.round(context / 4), max: Math.round((3 * context) / 4) },
    output: { median: Math.round(context / 10), p95: Math.round(context / 5), min: Math.round(context / 16), max: Math.round(context / 4) },
    sloScale: { ttft: 10, tpot: 10 },
    pageBytes: 32 * 1024,
    kvReserveTokens: Math.round(context / 8),
    onLoad: (id, f) => loading.update(Math.round((100 * (lineup.findIndex((m) => m.id === id) + f)) / lineup.length), 100),
  };
  log(`models ${lineup.map((m) => `${m.id} (${m.precision})`).join(', ')}; KV budget ${kvMiB} MiB`);
  const { onLoad: _, ...setup } = await preloadModels(files);
  loading.stop();
  try {
    return await compare(setup, { rate, seconds, json: values.json === true });
  } finally {
    disposeModels(setup);
  }
}

async function compare(setup: MemorySetup, o: { rate: number | undefined; seconds: number; json: boolean }): Promise<number> {
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const { rate, seconds } = o;
  log('measuring each model alone for the SLOs');
  const calibration = await calibrateMemory(setup, 1);
  const meanCostMs = calibration.reduce((a, c) => a + (c.aloneTtftMs * setup.input.median) / setup.input.p95 + setup.output.median * c.aloneTpotMs, 0) / calibration.length;
  // Default load: twice what the device serves one request at a time, so the KV pool, by how
  // many sequences it lets run at once, decides what gets served (bench/serve-memory.ts).
  const r = rate ?? Math.max(0.5, Math.round((2 * 1000 * 10) / meanCostMs) / 10);
  const { arrivals } = shiftingWorkload(setup, { ratePerSecond: r, durationMs: seconds * 1000, seed: 1, phases: 4, hot: 4, cold: 0.25 });
  log(`shifting workload: ${arrivals.length} requests over ${seconds} s at ${r} req/s; the hot model (4x, the others 0.25x) rotates every ${(seconds / 4).toFixed(1)} s; prompts ${setup.input.min}-${setup.input.max}, outputs ${setup.output.min}-${setup.output.max} tokens`);
  const runs: MemoryRun[] = [];
  for (const system of POLICY_SYSTEMS) {
    const bar = progress(system.label, 'requests');
    runs.push(await runMemorySystem(system, setup, calibration, arrivals, (done, total, sample) => bar.update(done, total, sample === undefined ? '' : `| running ${Object.values(sample.running).reduce((a, b) => a + b, 0)}`)));
    bar.stop();
  }
  console.log(o.json ? JSON.stringify({ calibration, runs: runs.map((x) => ({ ...x, samples: undefined })) }, null, 2) : formatMemoryComparison(calibration, runs));
  return 0;
}
