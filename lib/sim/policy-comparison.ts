/**
 * Side-by-side runs of the serving policies on one device: the same models in several
 * precisions, the same SLOs (set from each model's latency alone, as the paper scales them), the
 * same Poisson arrivals, through a fresh Engine per policy. `fineserve demo` and
 * `bench/serve-cpu.ts` are thin layers over this.
 * @module
 */
import { availableParallelism } from 'node:os';

import { Engine, type DeviceStats, type EnginePolicy, type ServingSlo } from '../engine.js';
import type { PrecisionName } from '../precision.js';
import { generateWorkload, type Arrival, type LengthFit } from './workload.js';
import { Rng } from './rng.js';
import { replayWorkload, type ReplayReport } from './workload-replay.js';

/** The models and machine of a comparison. */
export interface ComparisonSetup {
  /** `.gguf` file or HF folder, loaded once per precision. */
  readonly source: string;
  readonly models: readonly { readonly id: string; readonly precision: PrecisionName }[];
  readonly threads?: number;
  readonly slabBytes?: number;
  /** Serving context (prompt + output) of every model; default 1024. */
  readonly maxContext?: number;
  /** Per-model SLO multipliers over the latency alone; default ttft 5, tpot 5. */
  readonly sloScale?: { readonly ttft: number; readonly tpot: number };
  readonly onLoad?: (id: string, fraction: number) => void;
}

/** Short chat-like lengths that a CPU serves in seconds. */
export const CPU_INPUT: LengthFit = { median: 64, p95: 256, min: 4, max: 512 };
export const CPU_OUTPUT: LengthFit = { median: 32, p95: 128, min: 4, max: 256 };

/** Each model's latency alone and the SLO derived from it. */
export interface Calibration {
  readonly model: string;
  readonly aloneTtftMs: number;
  readonly aloneTpotMs: number;
  readonly slo: Required<ServingSlo>;
}

/** One policy at one rate. */
export interface PolicyRun {
  readonly policy: EnginePolicy;
  readonly ratePerSecond: number;
  readonly report: ReplayReport;
  /** KV accounting of the device when it held the most, sampled as requests ended. */
  readonly device: DeviceStats;
}

// FineServe drops what cannot meet its TTFT SLO, as the paper's scheduler does; the baseline
// serves everything, as vLLM does.
async function engineFor(policy: EnginePolicy, setup: ComparisonSetup, slos: Readonly<Record<string, ServingSlo>>): Promise<Engine> {
  const engine = await Engine.create({
    policy,
    threads: setup.threads ?? availableParallelism(),
    ...(setup.slabBytes === undefined ? {} : { slabBytes: setup.slabBytes }),
    staticPartitions: setup.models.length,
  });
  for (const m of setup.models) {
    await engine.loadModel({
      id: m.id,
      source: setup.source,
      precision: m.precision,
      maxContext: setup.maxContext ?? 1024,
      dropLate: policy !== 'static-fcfs',
      ...(slos[m.id] === undefined ? {} : { slo: slos[m.id]! }),
      ...(setup.onLoad === undefined ? {} : { onProgress: (f: number) => setup.onLoad!(m.id, f) }),
    });
  }
  return engine;
}

/** Random prompt ids for an arrival, reproducible from its id. */
export function promptFor(vocab: number): (a: Arrival) => number[] {
  return (a) => {
    const rng = new Rng(a.id * 7919 + 17);
    return Array.from({ length: a.promptTokens }, () => 3 + Math.floor(rng.next() * (vocab - 3)));
  };
}

/**
 * Each model alone, one request of the p95 prompt and the median output length at a time (five
 * times, the median kept): TTFT and TPOT, and SLOs of `sloScale` times them.
 */
export async function calibrate(setup: ComparisonSetup): Promise<Calibration[]> {
  const engine = await engineFor('fineserve', setup, {});
  const scale = setup.sloScale ?? { ttft: 5, tpot: 5 };
  const out: Calibration[] = [];
  try {
    for (const m of setup.models) {
      const tok = engine.tokenizer(m.id);
      // TTFT at the p95 prompt, as the reference scales its SLOs from a p95-length request, so a
      // long prompt alone is well inside its SLO.
      const prompt = promptFor(tok.vocabSize)({ id: 1, model: m.id, arrivalMs: 0, promptTokens: CPU_INPUT.p95, outputTokens: CPU_OUTPUT.median });
      const ttft: number[] = [];
      const tpot: number[] = [];
      // Five runs, the median kept: one noisy run on a shared machine must not set a tight SLO.
      for (let k = 0; k < 5; k++) {
        const r = await engine.generate({ model: m.id, tokens: prompt, maxTokens: CPU_OUTPUT.median, stopTokens: [] }).result;
        ttft.push(r.timings.ttftMs!);
        tpot.push(r.timings.tpotMs!);
      }
      const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[2]!;
      const aloneTtftMs = med(ttft);
      const aloneTpotMs = med(tpot);
      out.push({ model: m.id, aloneTtftMs, aloneTpotMs, slo: { ttftMs: scale.ttft * aloneTtftMs, tpotMs: scale.tpot * aloneTpotMs } });
    }
  } finally {
    await engine.close();
  }
  return out;
}

/** The arrivals of one run: Poisson at `ratePerSecond` over all models (split evenly). */
export function workload(setup: ComparisonSetup, ratePerSecond: number, durationMs: number, seed: number): Arrival[] {
  return generateWorkload({ models: setup.models.map((m) => m.id), totalRate: ratePerSecond, durationMs, seed, input: CPU_INPUT, output: CPU_OUTPUT });
}

/** Runs `arrivals` through a fresh engine under `policy`. */
export async function runPolicy(
  policy: EnginePolicy,
  setup: ComparisonSetup,
  calibration: readonly Calibration[],
  arrivals: readonly Arrival[],
  ratePerSecond: number,
  onProgress?: (ended: number, total: number) => void,
): Promise<PolicyRun> {
  const slos = Object.fromEntries(calibration.map((c) => [c.model, c.slo]));
  const engine = await engineFor(policy, setup, slos);
  try {
    const vocab = engine.tokenizer(setup.models[0]!.id).vocabSize;
    let peak: DeviceStats | undefined;
    let peakHeld = -1;
    const report = await replayWorkload(engine, arrivals, {
      promptFor: promptFor(vocab),
      onProgress: (ended, total) => {
        const d = engine.stats().devices[0]!;
        const held = Object.values(d.heldBytesByFormat).reduce((a, b) => a + (b ?? 0), 0);
        if (held > peakHeld) {
          peakHeld = held;
          peak = d;
        }
        onProgress?.(ended, total);
      },
    });
    return { policy, ratePerSecond, report, device: peak ?? engine.stats().devices[0]! };
  } finally {
    await engine.close();
  }
}
