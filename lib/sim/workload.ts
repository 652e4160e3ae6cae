/**
 * Workload generator: per-model Poisson or Gamma (coefficient of variation) arrivals, Zipf
 * popularity, rates that change in phases, and prompt/output lengths from a ShareGPT-like fit
 * (log-normal, p95 903 in and 631 out as the LMSYS-Chat figures the reference plans with; prompts
 * 4–2048 tokens and prompt + output ≤ 4096 as its ShareGPT filter keeps).
 * @module
 */
import { PlanError, requirePositive } from '../scheduler/errors.js';
import { Rng } from './rng.js';

/** One request. */
export interface Arrival {
  readonly id: number;
  readonly model: string;
  readonly arrivalMs: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
}

/** Log-normal length fit: median and p95. */
export interface LengthFit {
  readonly median: number;
  readonly p95: number;
  readonly min: number;
  readonly max: number;
}

/** ShareGPT-like prompt lengths. The median is ShareGPT's first-turn median order of magnitude; p95 is LMSYS-Chat's 903. */
export const SHAREGPT_INPUT: LengthFit = { median: 250, p95: 903, min: 4, max: 2048 };
/** ShareGPT-like output lengths (p95 631). */
export const SHAREGPT_OUTPUT: LengthFit = { median: 200, p95: 631, min: 4, max: 2048 };
/** The reference keeps pairs whose prompt + output is at most this. */
export const MAX_TOTAL_TOKENS = 4096;

/** A change of rates at a time: each model's base rate is multiplied by its factor (default 1). */
export interface RatePhase {
  readonly atMs: number;
  readonly multipliers: Readonly<Record<string, number>>;
}

/** What to generate. */
export interface WorkloadSpec {
  /** Model ids; with `zipf`, their order is their popularity rank before the seeded shuffle. */
  readonly models: readonly string[];
  /** Requests per second over all models (split by `zipf`, or evenly), or per model in `rates`. */
  readonly totalRate?: number;
  readonly rates?: Readonly<Record<string, number>>;
  /** Zipf exponent of popularity; 0 is uniform. Ranks are shuffled by the seed. */
  readonly zipf?: number;
  readonly durationMs: number;
  readonly seed: number;
  /** Coefficient of variation of inter-arrival times: 1 is Poisson (the default). */
  readonly cv?: number;
  readonly phases?: readonly RatePhase[];
  readonly input?: LengthFit;
  readonly output?: LengthFit;
}

/** Base rate per model: explicit, or `totalRate` split by Zipf(s) over a seeded ranking. */
export function modelRates(spec: WorkloadSpec): Record<string, number> {
  if (spec.rates !== undefined) {
    for (const m of spec.models) requirePositive('workload', `rates.${m}`, spec.rates[m] ?? NaN, true);
    return Object.fromEntries(spec.models.map((m) => [m, spec.rates![m]!]));
  }
  const total = requirePositive('workload', 'totalRate', spec.totalRate, true);
  const s = spec.zipf ?? 0;
  const order = [...spec.models];
  const rng = new Rng(spec.seed ^ 0x5eed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const weights = order.map((_, rank) => 1 / Math.pow(rank + 1, s));
  const sum = weights.reduce((a, b) => a + b, 0);
  return Object.fromEntries(order.map((m, rank) => [m, (total * weights[rank]!) / sum]));
}

/** Draws a length from a log-normal fit, clamped to its range. */
export function drawLength(rng: Rng, fit: LengthFit): number {
  const sigma = Math.log(fit.p95 / fit.median) / 1.6448536;
  const x = Math.round(fit.median * Math.exp(sigma * rng.normal()));
  return Math.min(fit.max, Math.max(fit.min, x));
}

/** Generates the arrivals, sorted by time then model; ids are their index. Deterministic for a seed. */
export function generateWorkload(spec: WorkloadSpec): Arrival[] {
  requirePositive('workload', 'durationMs', spec.durationMs);
  if (spec.models.length === 0) throw new PlanError('ERR_SIM_INPUT', 'workload', 'models', 'no models');
  const cv = requirePositive('workload', 'cv', spec.cv ?? 1);
  const base = modelRates(spec);
  const phases = [...(spec.phases ?? [])].sort((a, b) => a.atMs - b.atMs);
  const inFit = spec.input ?? SHAREGPT_INPUT;
  const outFit = spec.output ?? SHAREGPT_OUTPUT;
  const raw: Omit<Arrival, 'id'>[] = [];
  spec.models.forEach((model, mi) => {
    const rng = new Rng((spec.seed * 1000003 + mi * 7919) >>> 0);
    const bounds = [0, ...phases.map((p) => p.atMs).filter((t) => t > 0 && t < spec.durationMs), spec.durationMs];
    for (let k = 0; k + 1 < bounds.length; k++) {
      const start = bounds[k]!;
      const end = bounds[k + 1]!;
      const phase = [...phases].reverse().find((p) => p.atMs <= start);
      const rate = base[model]! * (phase?.multipliers[model] ?? 1);
      if (!(rate > 0)) continue;
      const meanGap = 1000 / rate;
      // Gamma with shape 1/cv² and mean meanGap: cv 1 is the exponential (Poisson arrivals).
      const shape = 1 / (cv * cv);
      let t = start + rng.gamma(shape, meanGap / shape);
      while (t < end) {
        const prompt = drawLength(rng, inFit);
        const output = Math.min(drawLength(rng, outFit), MAX_TOTAL_TOKENS - prompt);
        raw.push({ model, arrivalMs: t, promptTokens: prompt, outputTokens: Math.max(1, output) });
        t += rng.gamma(shape, meanGap / shape);
      }
    }
  });
  raw.sort((a, b) => a.arrivalMs - b.arrivalMs || a.model.localeCompare(b.model));
  return raw.map((r, id) => ({ id, ...r }));
}
