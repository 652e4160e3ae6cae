/**
 * Memory-bound serving on the real engine: co-located models of different KV formats and depths,
 * a KV budget small enough that static partitions cap each model's batch, long-ish requests, and
 * per-model rates that shift during the run (the hot model rotates). Each system is a fresh
 * Engine on the same arrivals and SLOs; they differ only in what {@link MemorySystem} names (the
 * KV pool, and for the policy comparison the scheduler too). While a run serves, the engine's
 * stats are sampled: concurrent sequences and KV tokens per model, KV held per format.
 * `fineserve demo` and `bench/serve-memory.ts` are thin layers over this.
 * @module
 */
import { availableParallelism } from 'node:os';

import { Engine, type EnginePolicy, type ServingSlo } from '../engine.js';
import type { KvPoolKind } from '../engine/kv-memory.js';
import type { KvFormat } from '../kv-pool.js';
import { Model } from '../model.js';
import type { PrecisionName } from '../precision.js';
import { median } from '../stats.js';
import { promptFor } from './policy-comparison.js';
import { generateWorkload, type Arrival, type LengthFit, type RatePhase } from './workload.js';
import { replayWorkload, type ReplayReport } from './workload-replay.js';

/** One co-located model: its file and the precision it is served in (which sets its KV format). */
export interface MemoryModel {
  readonly id: string;
  /** A path, or the Model already loaded in `precision` (see {@link preloadModels}). */
  readonly source: string | Model;
  readonly precision: PrecisionName;
}

/** The models, the KV budget and the requests of a comparison. */
export interface MemorySetup {
  /** Loaded in this order. */
  readonly models: readonly MemoryModel[];
  /** KV bytes of the device, whatever the pool. */
  readonly kvBytes: number;
  readonly threads?: number;
  /** Serving context of every model; at least the longest prompt + output. */
  readonly maxContext: number;
  readonly input: LengthFit;
  readonly output: LengthFit;
  /** SLO multipliers over each model's latency alone. */
  readonly sloScale: { readonly ttft: number; readonly tpot: number };
  /** `paged`: page size (scaled with the budget: 2 MiB pages in a 40 MiB pool would be whole partitions). */
  readonly pageBytes: number;
  /** kv-slab: tokens each model can always get (the rest is shared). */
  readonly kvReserveTokens: number;
  readonly onLoad?: (id: string, fraction: number) => void;
}

/** One system under test. */
export interface MemorySystem {
  readonly label: string;
  readonly policy: EnginePolicy;
  readonly kvPool: KvPoolKind;
  /** End requests that cannot meet their TTFT SLO (FineServe's drop); false serves everything. */
  readonly dropLate: boolean;
}

/**
 * Same scheduler (FineServe's local policy, serving everything: no drops), only the KV pool
 * changing. The policy admits while the pool has blocks and the step stays inside the decodes'
 * TPOT SLO, so a pool that lets more sequences in raises the batch only as far as the device
 * can still serve it on time.
 */
export const POOL_SYSTEMS: readonly MemorySystem[] = [
  { label: 'kv-slab', policy: 'fineserve', kvPool: 'kv-slab', dropLate: false },
  { label: 'static', policy: 'fineserve', kvPool: 'static', dropLate: false },
  { label: 'unified', policy: 'fineserve', kvPool: 'unified', dropLate: false },
  { label: 'paged', policy: 'fineserve', kvPool: 'paged', dropLate: false },
];

/**
 * The KV Slab under FCFS (vLLM's scheduler, which admits while the pool has blocks): what more
 * concurrent sequences do on a device whose step time grows faster than its batch.
 */
export const FCFS_SLAB: MemorySystem = { label: 'kv-slab-fcfs', policy: 'static-fcfs', kvPool: 'kv-slab', dropLate: false };

/** Full FineServe (KV Slab, SLO-aware scheduling that drops what cannot make it) vs the vLLM-style baseline. */
export const POLICY_SYSTEMS: readonly MemorySystem[] = [
  { label: 'fineserve', policy: 'fineserve', kvPool: 'kv-slab', dropLate: true },
  { label: 'static-fcfs', policy: 'static-fcfs', kvPool: 'static', dropLate: false },
];

/** Each model's latency alone and the SLO derived from it. */
export interface MemoryCalibration {
  readonly model: string;
  readonly kvFormat: KvFormat;
  readonly kvBytesPerToken: number;
  /** Bytes of one KV block (`unified` pads every model's to the largest). */
  readonly blockBytes: number;
  /** TTFT of a p95-length prompt alone. */
  readonly aloneTtftMs: number;
  readonly aloneTpotMs: number;
  readonly slo: Required<ServingSlo>;
}

/** One sample of the engine while it serves. */
export interface MemorySample {
  readonly tMs: number;
  /** Per model: running sequences, waiting requests, KV tokens held by its live sequences. */
  readonly running: Readonly<Record<string, number>>;
  readonly waiting: Readonly<Record<string, number>>;
  readonly liveTokens: Readonly<Record<string, number>>;
  /** KV bytes held per format (the pool's accounting: padding and stranded blocks included). */
  readonly heldBytesByFormat: Readonly<Partial<Record<KvFormat, number>>>;
}

/** One system over one workload. */
export interface MemoryRun {
  readonly system: MemorySystem;
  readonly report: ReplayReport;
  readonly samples: readonly MemorySample[];
  /** Per model: mean and peak concurrent sequences, mean and peak live KV tokens (over the arrival window). */
  readonly concurrency: Readonly<Record<string, { readonly meanRunning: number; readonly peakRunning: number; readonly meanLiveTokens: number; readonly peakLiveTokens: number }>>;
  /** Mean live KV tokens over all models in the arrival window: what the pool let in at once. */
  readonly meanLiveTokens: number;
  readonly peakHeldBytesByFormat: Readonly<Partial<Record<KvFormat, number>>>;
  /** paged: modelled page map + unmap time spent, ms. */
  readonly mapCostMs: number;
}

const SAMPLE_MS = 250;

async function engineFor(system: MemorySystem, setup: MemorySetup, slos: Readonly<Record<string, ServingSlo>>, blockBytes?: number): Promise<Engine> {
  const engine = await Engine.create({
    policy: system.policy,
    kvPool: system.kvPool,
    threads: setup.threads ?? availableParallelism(),
    slabBytes: setup.kvBytes,
    staticPartitions: setup.models.length,
    kvPoolOptions: { pageBytes: setup.pageBytes, ...(blockBytes === undefined ? {} : { blockBytes }) },
  });
  try {
    for (const m of setup.models) {
      await engine.loadModel({
        id: m.id,
        source: m.source,
        ...(typeof m.source === 'string' ? { precision: m.precision } : {}),
        maxContext: setup.maxContext,
        dropLate: system.dropLate,
        ...(system.kvPool === 'kv-slab' ? { kvReserveTokens: setup.kvReserveTokens } : {}),
        ...(slos[m.id] === undefined ? {} : { slo: slos[m.id]! }),
        ...(setup.onLoad === undefined ? {} : { onProgress: (f: number) => setup.onLoad!(m.id, f) }),
      });
    }
  } catch (err) {
    await engine.close();
    throw err;
  }
  return engine;
}

/**
 * Loads (and quantizes) every model once, so each system's engine attaches the same weights
 * instead of loading them again; dispose them with {@link disposeModels}.
 */
export async function preloadModels(setup: MemorySetup): Promise<MemorySetup> {
  const models: MemoryModel[] = [];
  try {
    for (const m of setup.models) {
      const source = typeof m.source === 'string' ? await Model.load(m.source, { precision: m.precision, ...(setup.onLoad === undefined ? {} : { onProgress: (f: number) => setup.onLoad!(m.id, f) }) }) : m.source;
      models.push({ ...m, source });
    }
  } catch (err) {
    disposeModels({ ...setup, models });
    throw err;
  }
  return { ...setup, models };
}

/** Frees the weights {@link preloadModels} loaded. */
export function disposeModels(setup: MemorySetup): void {
  for (const m of setup.models) if (typeof m.source !== 'string') m.source.dispose();
}

/**
 * Each model alone on the setup's KV Slab: TTFT of a p95-length prompt and TPOT of a median output
 * (median of `reps`), and SLOs of `sloScale` times them.
 */
export async function calibrateMemory(setup: MemorySetup, reps = 3): Promise<MemoryCalibration[]> {
  // The runs' own budget: one request at a time fits it, and the pool's slab size (which sets
  // the tokens per block, so the block bytes `unified` pads to) is the one the runs will have.
  const engine = await engineFor({ label: 'calibration', policy: 'fineserve', kvPool: 'kv-slab', dropLate: false }, setup, {});
  const out: MemoryCalibration[] = [];
  try {
    const stats = engine.stats();
    const info = stats.models;
    const pool = stats.devices[0]!.kv[0]!.models;
    for (const m of setup.models) {
      const prompt = promptFor(engine.tokenizer(m.id).vocabSize)({ id: 1, model: m.id, arrivalMs: 0, promptTokens: setup.input.p95, outputTokens: 0 });
      const ttft: number[] = [];
      const tpot: number[] = [];
      for (let k = 0; k < reps; k++) {
        const r = await engine.generate({ model: m.id, tokens: prompt, maxTokens: Math.min(setup.output.median, 64), stopTokens: [] }).result;
        ttft.push(r.timings.ttftMs!);
        tpot.push(r.timings.tpotMs!);
      }
      const s = info.find((x) => x.id === m.id)!;
      const aloneTtftMs = median(ttft);
      const aloneTpotMs = median(tpot);
      out.push({ model: m.id, kvFormat: s.kvFormat, kvBytesPerToken: s.kvBytesPerToken, blockBytes: pool.find((p) => p.name === m.id)!.blockBytes, aloneTtftMs, aloneTpotMs, slo: { ttftMs: setup.sloScale.ttft * aloneTtftMs, tpotMs: setup.sloScale.tpot * aloneTpotMs } });
    }
  } finally {
    await engine.close();
  }
  return out;
}

/**
 * Arrivals whose demand shifts: `phases` equal phases over `durationMs`; in phase k model
 * k mod n is hot (its rate times `hot`), the others run at `cold` times their base. The base
 * rate is `ratePerSecond` split evenly.
 */
export function shiftingWorkload(setup: MemorySetup, o: { ratePerSecond: number; durationMs: number; seed: number; phases: number; hot: number; cold: number }): { arrivals: Arrival[]; phases: RatePhase[] } {
  const ids = setup.models.map((m) => m.id);
  const phases: RatePhase[] = Array.from({ length: o.phases }, (_, k) => ({
    atMs: (k * o.durationMs) / o.phases,
    multipliers: Object.fromEntries(ids.map((id, i) => [id, i === k % ids.length ? o.hot : o.cold])),
  }));
  // The mean multiplier over models is (hot + (n - 1) cold) / n; the base rate is scaled so the
  // offered total stays `ratePerSecond` whatever the shift.
  const mean = (o.hot + (ids.length - 1) * o.cold) / ids.length;
  const base = o.ratePerSecond / ids.length / mean;
  const arrivals = generateWorkload({ models: ids, rates: Object.fromEntries(ids.map((id) => [id, base])), durationMs: o.durationMs, seed: o.seed, phases, input: setup.input, output: setup.output });
  return { arrivals, phases };
}

/** Runs `arrivals` through a fresh engine of `system`, sampling its stats every 250 ms. */
export async function runMemorySystem(
  system: MemorySystem,
  setup: MemorySetup,
  calibration: readonly MemoryCalibration[],
  arrivals: readonly Arrival[],
  onProgress?: (ended: number, total: number, sample: MemorySample | undefined) => void,
): Promise<MemoryRun> {
  const slos = Object.fromEntries(calibration.map((c) => [c.model, c.slo]));
  const engine = await engineFor(system, setup, slos, system.kvPool === 'unified' ? Math.max(...calibration.map((c) => c.blockBytes)) : undefined);
  const samples: MemorySample[] = [];
  const start = performance.now();
  const sample = (): MemorySample => {
    const s = engine.stats();
    const d = s.devices[0]!;
    const by = (f: (m: (typeof s.models)[number]) => number) => Object.fromEntries(s.models.map((m) => [m.id, f(m)]));
    return { tMs: Math.round(performance.now() - start), running: by((m) => m.running), waiting: by((m) => m.waiting), liveTokens: by((m) => m.liveTokens), heldBytesByFormat: d.heldBytesByFormat };
  };
  const timer = setInterval(() => samples.push(sample()), SAMPLE_MS);
  let report: ReplayReport;
  let mapCostMs = 0;
  try {
    report = await replayWorkload(engine, arrivals, {
      promptFor: promptFor(engine.tokenizer(setup.models[0]!.id).vocabSize),
      onProgress: (ended, total) => onProgress?.(ended, total, samples.at(-1)),
    });
    mapCostMs = engine.stats().devices[0]!.kv.reduce((a, k) => a + k.mapCostNs, 0) / 1e6;
  } finally {
    clearInterval(timer);
    await engine.close();
  }
  // Concurrency over the arrival window: the drain at the end runs whatever is left, alone.
  const lastArrival = arrivals.at(-1)?.arrivalMs ?? 0;
  const window = samples.filter((x) => x.tMs <= lastArrival);
  const use = window.length > 0 ? window : samples;
  const concurrency = Object.fromEntries(
    setup.models.map((m) => {
      const run = use.map((x) => x.running[m.id] ?? 0);
      const live = use.map((x) => x.liveTokens[m.id] ?? 0);
      const mean = (xs: number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
      return [m.id, { meanRunning: mean(run), peakRunning: Math.max(0, ...run), meanLiveTokens: mean(live), peakLiveTokens: Math.max(0, ...live) }];
    }),
  );
  const meanLiveTokens = Object.values(concurrency).reduce((a, c) => a + c.meanLiveTokens, 0);
  const peakHeldBytesByFormat: Partial<Record<KvFormat, number>> = {};
  for (const x of samples) {
    for (const [f, v] of Object.entries(x.heldBytesByFormat) as [KvFormat, number][]) peakHeldBytesByFormat[f] = Math.max(peakHeldBytesByFormat[f] ?? 0, v);
  }
  return { system, report, samples, concurrency, meanLiveTokens, peakHeldBytesByFormat, mapCostMs };
}

/**
 * Four co-located models, four KV formats, two depths: an 8-layer model with an INT8 KV cache,
 * a 4-layer one in f16 and in FP8 KV, and an 8-layer one in INT4 KV with per-token scales.
 */
export function mixedLineup(fourLayer: string, eightLayer: string): MemoryModel[] {
  return [
    { id: 'l8-int8', source: eightLayer, precision: 'w8a8-kvi8' },
    { id: 'l4-f16', source: fourLayer, precision: 'fp16' },
    { id: 'l4-fp8', source: fourLayer, precision: 'w8a8-kv8' },
    { id: 'l8-int4', source: eightLayer, precision: 'w4a16-kv4' },
  ];
}
