/**
 * The run: for each model, open both engines on the same GGUF with the same threads, measure
 * prefill, single-stream decode and aggregate decode at each concurrency, write the results file
 * and print the summary line.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, relative } from 'node:path';

import { devices } from '../../lib/index.js';
import { type ModelSpec, parseArgs, ROOT, type BenchConfig } from './config.js';
import { modelPath, modelSource } from './models.js';
import { FineserveEngine, PeerEngine, PerRowKernelsEngine, type Engine } from './engines.js';
import { measureRoofline, type Roofline } from './roofline.js';
import { type ModelShape, rates } from './rates.js';
import { addonIdentity, ForeignLoad, foreignLoadNow, waitQuiet } from './machine.js';
import { decode, type Engines, makePrompts, type MetricResult, prefill } from './measure.js';

/**
 * Other processes' CPU use (cores) under which a measurement counts as undisturbed: they must
 * leave the benchmark's threads their cores (a quarter core of background noise tolerated).
 */
function quietCores(threads: number): number {
  return Math.max(0, availableParallelism() - threads) + 0.25;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

const METRIC_LABELS: Record<string, string> = { prefill: 'prefill', decode: 'decode' };

const ratioText = (m: MetricResult): string => (m.ratio === null ? 'n/a (fineserve alone)' : `${m.ratio.toFixed(2)}x`);

function label(metric: string): string {
  return METRIC_LABELS[metric] ?? metric.replace(/^decode-(\d+)$/, '$1-seq');
}

async function openComparison(path: string, config: BenchConfig): Promise<Engine | undefined> {
  const options = { threads: config.threads, kvFormat: config.kvFormat };
  if (config.against === 'peer') return PeerEngine.open(path, options, log);
  if (config.against === 'kernels') return PerRowKernelsEngine.open(path, options);
  return undefined;  // --smoke: npm test never installs the peer (~725 MB)
}

/** The headline prefill is named "prefill" (256 tokens, or the only length); the others prefill-N. */
function prefillName(tokens: number, config: BenchConfig): string {
  const headline = config.prefillTokens.includes(256) ? 256 : config.prefillTokens[0];
  return tokens === headline ? 'prefill' : `prefill-${tokens}`;
}

/** Opens fineserve on `path`; a file that does not load fails naming the model and the file. */
async function openFineserve(key: string, path: string, config: BenchConfig): Promise<FineserveEngine> {
  try {
    return await FineserveEngine.open(path, { threads: config.threads, kvFormat: config.kvFormat });
  } catch (err) {
    throw new Error(`${key}: ${path} does not load: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

async function benchModel(
  spec: ModelSpec,
  config: BenchConfig,
  roofline: Roofline,
): Promise<{ model: Record<string, unknown>; metrics: Record<string, MetricResult> }> {
  const key = spec.key;
  const path = await modelPath(spec, log);
  const quiet = quietCores(config.threads);
  const reps = config.reps ?? (key === 'stories260K' ? 5 : 3);
  const fs = await openFineserve(key, path, config);
  const peer = await openComparison(path, config);
  const engines: Engines = peer === undefined ? [fs] : [fs, peer];
  const c = fs.model.config;
  const shape: ModelShape = { ...c, weightBytes: fs.model.weightBytes, maxBatchTokens: 512 };
  const metrics: Record<string, MetricResult> = {};
  // Each measurement: optionally wait for quiet, then record how busy other processes kept the CPU.
  // With --wait-quiet, a measurement disturbed by other processes is redone (at most twice more)
  // and the least disturbed attempt kept.
  const measure = async (name: string, run: () => Promise<MetricResult>) => {
    let best: { m: MetricResult; cores: number | undefined } | undefined;
    for (let attempt = 0; attempt < (config.waitQuiet > 0 ? 3 : 1); attempt++) {
      if (config.waitQuiet > 0) await waitQuiet(config.waitQuiet, quiet, log);
      const foreign = new ForeignLoad();
      const m = await run();
      const cores = foreign.cores();
      if (best === undefined || (cores ?? 0) < (best.cores ?? 0)) best = { m, cores };
      if (cores === undefined || cores < quiet) break;
      log(`  ${key} ${name}: other processes used ${cores.toFixed(2)} cores meanwhile (ratio ${ratioText(m)})${config.waitQuiet > 0 ? ': again' : ''}`);
    }
    const { m, cores } = best!;
    const r = rates(shape, m, roofline, config.threads);
    metrics[name] = { ...m, ...r, detail: { ...m.detail, foreignCpuCores: cores === undefined ? null : Number(cores.toFixed(2)) } };
    const perf = `${r.gflops.fineserve.toFixed(1)} GFLOP/s ${r.gbps.fineserve.toFixed(1)} GB/s`;
    const busy = cores !== undefined && cores >= quiet ? ` (other processes used ${cores.toFixed(2)} cores: noisy)` : '';
    log(`  ${key} ${name}: fineserve ${m.fineserve.toFixed(1)} tok/s (${perf}), ${peer?.name ?? 'no comparison'} ${m.peer === null ? 'not run' : `${m.peer.toFixed(1)} tok/s`}, ratio ${ratioText(m)}${busy}`);
  };
  try {
    log(`${key}: ${c.layers} layers, hidden ${c.hiddenSize}, vocab ${c.vocabSize}, ${(fs.model.weightBytes / 2 ** 20).toFixed(1)} MiB of weights; ${reps} reps`);
    const lengths = [...new Set(config.prefillTokens.map((n) => Math.min(n, c.maxContext - 1)))];
    for (const n of lengths) {
      await measure(prefillName(n, config), () => prefill(engines, reps, makePrompts(1, n, c.vocabSize, 1)[0]!));
    }
    for (const n of config.concurrency) {
      await measure(n === 1 ? 'decode' : `decode-${n}`, () => decode(engines, reps, makePrompts(n, config.decodePromptTokens, c.vocabSize, n === 1 ? 2 : 3), config.decodeTokens));
    }
    return {
      model: {
        path: relative(ROOT, path),
        source: modelSource(spec),
        layers: c.layers,
        hiddenSize: c.hiddenSize,
        intermediateSize: c.intermediateSize,
        heads: c.heads,
        kvHeads: c.kvHeads,
        headDim: c.headDim,
        vocabSize: c.vocabSize,
        weightBytes: fs.model.weightBytes,
        reps,
        fineserve: fs.describe(),
        against: peer?.name ?? 'none (--smoke)',
        peer: peer?.describe() ?? 'not run (--smoke)',
      },
      metrics,
    };
  } finally {
    await peer?.close();
    await fs.close();
  }
}

export async function main(argv: readonly string[]): Promise<void> {
  const config = parseArgs(argv);
  const started = new Date();
  const loadBefore = loadavg();
  const dev = await devices();
  log(
    `engine-cpu: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}; ` +
      `${config.threads} threads, KV ${config.kvFormat}`,
  );
  const foreignAtStart = await foreignLoadNow(1);
  if (foreignAtStart !== undefined && foreignAtStart >= quietCores(config.threads)) {
    log(
      `  warning: other processes use ${foreignAtStart.toFixed(2)} cores: timings will be noisy, node-llama-cpp's most ` +
        '(its thread pool spin-waits); try --wait-quiet 600, or --threads 1',
    );
  }
  const roofline = measureRoofline(config.smoke);
  log(`  roofline (1 thread): copy ${roofline.copyGBps.toFixed(1)} GB/s, FMA ${roofline.fmaGflops.toFixed(1)} GFLOP/s`);
  const models: Record<string, unknown> = {};
  const parts: string[] = [];
  for (const spec of config.models) {
    const r = await benchModel(spec, config, roofline);
    models[spec.key] = r;
    const name = spec.key.replace(/^llama-100m-/, 'llama-100m ');
    parts.push(`${name} ${Object.entries(r.metrics).map(([m, v]) => `${label(m)} ${v.ratio === null ? `${v.fineserve.toFixed(0)} tok/s` : `${v.ratio.toFixed(2)}x`}`).join(', ')}`);
  }
  const loadAfter = loadavg();
  const results = {
    benchmark: 'engine-cpu',
    description:
      'fineserve ModelRunner vs node-llama-cpp (llama.cpp CPU prebuilt), or vs fineserve with its per-row kernels of before ' +
      'the GEMM (--against kernels), on the same GGUF, same threads, in one process. ' +
      'tokens/s, median of reps after a warm-up; ratio = fineserve / the other (above 1: fineserve faster). ' +
      'prefill: one prompt, time to its first token. decode: differential, N*(G-1)/(T(G)-T(1)), greedy, no stop tokens. ' +
      'gflops: matrix-product flops only (2 per weight per token; the LM head once per prefill, per token in decode); ' +
      'gbps: weight bytes read per second (all weights once per step; prefill steps of maxBatchTokens); ' +
      'fmaPeakFraction: gflops over the FMA roofline times the threads.',
    date: started.toISOString(),
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: availableParallelism(),
      memoryBytes: totalmem(),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      fineserveSimd: dev.cpu.simd,
      fineserveAddon: addonIdentity(ROOT),
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAfter,
      roofline: { ...roofline, threads: 1, measuredBy: 'bench/engine-cpu/roofline.cc (STREAM-like copy of 256 MiB arrays, 12 chains of AVX2 FMAs)' },
    },
    config: {
      threads: config.threads,
      kvFormat: config.kvFormat,
      prefillTokens: config.prefillTokens,
      decodePromptTokens: config.decodePromptTokens,
      decodeTokens: config.decodeTokens,
      concurrency: config.concurrency,
      against: config.against,
      reps: config.reps ?? { stories260K: 5, others: 3 },
      waitQuietSeconds: config.waitQuiet,
      smoke: config.smoke,
    },
    models,
    summary: `engine-cpu (${config.threads} threads, vs ${config.against}): ${parts.join('; ')}`,
  };
  mkdirSync(dirname(config.out), { recursive: true });
  writeFileSync(config.out, `${JSON.stringify(results, null, 2)}\n`);
  log(`wrote ${relative(ROOT, config.out)}`);
  console.log(results.summary);
}
