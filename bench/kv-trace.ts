/**
 * Workload generator for the KV Slab benchmark: per-model Poisson arrivals whose rates shift in
 * phases, with request lengths drawn like ShareGPT. Everything comes from one seeded PRNG, so a
 * seed names a trace exactly.
 *
 * Lengths: lognormal input and output fitted to the LMSYS-Chat p95s FineServe sizes its
 * placement with (903 in, 631 out; fineserve-notes.md §6.1), kept only when both are in [4, 2048]
 * and the total is at most 4096, the filter the reference applies to ShareGPT pairs.
 *
 * Rates: each phase one model is the popular one and popularity falls off Zipf-like over the rest,
 * rotating every phase. Shares are of KV *bytes* demanded (rate x tokens held x bytes per token),
 * so a popular 4-bit model really does want as much memory as a popular 70B one; the rates in
 * requests per second follow from the pool size and the load factor.
 * @module
 */

/** mulberry32: a 32-bit PRNG, small, fast and plenty for workload sampling. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal by Box-Muller (one of the pair is enough here). */
function normal(rand: () => number): number {
  const u = 1 - rand(); // (0, 1], so the log is finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** A lognormal length distribution given by its 95th percentile and log-space spread. */
export interface LengthFit {
  readonly p95: number;
  readonly sigma: number;
}

export interface LengthOptions {
  readonly input: LengthFit;
  readonly output: LengthFit;
  readonly min: number;
  readonly maxInput: number;
  readonly maxOutput: number;
  readonly maxTotal: number;
}

/**
 * ShareGPT-like: prompts are heavier-tailed than replies. The sigmas are a judgement call (ShareGPT
 * prompts have a long tail of pasted documents); the p95s are the ones the reference uses.
 */
export const SHAREGPT_LIKE: LengthOptions = {
  input: { p95: 903, sigma: 1.2 },
  output: { p95: 631, sigma: 0.8 },
  min: 4,
  maxInput: 2048,
  maxOutput: 2048,
  maxTotal: 4096,
};

/** Upper tail of the standard normal (Abramowitz & Stegun 7.1.26, error < 1.5e-7). */
function upperTail(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * x);
  const erfc =
    t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) * Math.exp(-x * x);
  return z >= 0 ? erfc / 2 : 1 - erfc / 2;
}

/**
 * The log-space mean that puts the p95 *after* the [min, max] filter where the fit says: dropping
 * the long tail above max would otherwise pull the p95 down by ~10 % for prompts.
 */
function fitMu(fit: LengthFit, min: number, max: number): number {
  const tailAbove = (x: number, mu: number): number => upperTail((Math.log(x) - mu) / fit.sigma);
  let lo = Math.log(fit.p95) - 4 * fit.sigma;
  let hi = Math.log(fit.p95);
  for (let i = 0; i < 100; i++) {
    const mu = (lo + hi) / 2;
    const kept = 1 - tailAbove(max + 0.5, mu) - (1 - tailAbove(min - 0.5, mu));
    const above = (tailAbove(fit.p95, mu) - tailAbove(max + 0.5, mu)) / kept;
    if (above > 0.05) hi = mu;
    else lo = mu;
  }
  return (lo + hi) / 2;
}

function lognormal(rand: () => number, mu: number, sigma: number): number {
  return Math.max(1, Math.round(Math.exp(mu + sigma * normal(rand))));
}

/** Draws request length pairs, each redrawn until it passes the reference's filter. */
export function lengthSampler(rand: () => number, o: LengthOptions = SHAREGPT_LIKE): () => { input: number; output: number } {
  const muIn = fitMu(o.input, o.min, o.maxInput);
  const muOut = fitMu(o.output, o.min, o.maxOutput);
  return () => {
    for (;;) {
      const input = lognormal(rand, muIn, o.input.sigma);
      const output = lognormal(rand, muOut, o.output.sigma);
      if (input < o.min || output < o.min || input > o.maxInput || output > o.maxOutput) continue;
      if (input + output > o.maxTotal) continue;
      return { input, output };
    }
  };
}

export interface TraceModel {
  readonly name: string;
  /** Exact KV bytes one token holds (layout().tokenBytes). */
  readonly tokenBytes: number;
}

export interface TraceOptions {
  readonly seed: number;
  readonly models: readonly TraceModel[];
  readonly poolBytes: number;
  /** Offered KV demand over pool bytes, summed over the models, in every phase. */
  readonly load: number;
  /** Share of demand by popularity rank; rotated so model p % n is the popular one in phase p. */
  readonly rankShares: readonly number[];
  readonly phases: number;
  readonly phaseSeconds: number;
  /** Simulated time of one decode iteration. */
  readonly stepSeconds: number;
  readonly lengths?: LengthOptions;
}

export interface TraceRequest {
  readonly id: number;
  readonly model: number;
  readonly arrivalStep: number;
  readonly input: number;
  readonly output: number;
}

export interface TracePhase {
  readonly startStep: number;
  readonly endStep: number;
  readonly hotModel: number;
  readonly shares: readonly number[];
  /** Requests per second per model. */
  readonly rates: readonly number[];
}

export interface LengthSummary {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
}

export interface Trace {
  readonly requests: readonly TraceRequest[];
  readonly phases: readonly TracePhase[];
  readonly steps: number;
  /** Mean over requests of sum over decode steps of tokens held: the KV a request costs. */
  readonly meanTokenSteps: number;
  readonly input: LengthSummary;
  readonly output: LengthSummary;
}

function summarize(values: readonly number[]): LengthSummary {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return {
    count: s.length,
    mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
    p50: at(0.5),
    p95: at(0.95),
    max: s[s.length - 1] ?? 0,
  };
}

/** Tokens a request holds summed over its decode steps: input + k for k in [0, output). */
function tokenSteps(input: number, output: number): number {
  return output * input + (output * (output - 1)) / 2;
}

/**
 * The expected KV cost of a request, from a large sample of the length model on its own stream
 * (so the rates do not depend on how many requests the trace happens to hold).
 */
function expectedTokenSteps(seed: number, lengths: LengthOptions): number {
  const draw = lengthSampler(mulberry32(seed ^ 0x5bd1e995), lengths);
  let sum = 0;
  const n = 200_000;
  for (let i = 0; i < n; i++) {
    const { input, output } = draw();
    sum += tokenSteps(input, output);
  }
  return sum / n;
}

export function makeTrace(o: TraceOptions): Trace {
  const lengths = o.lengths ?? SHAREGPT_LIKE;
  const n = o.models.length;
  const meanTokenSteps = expectedTokenSteps(o.seed, lengths);
  const total = o.rankShares.reduce((a, b) => a + b, 0);
  const stepsPerPhase = Math.round(o.phaseSeconds / o.stepSeconds);
  const phases: TracePhase[] = [];
  for (let p = 0; p < o.phases; p++) {
    const shares = o.models.map((_, m) => (o.rankShares[(m - p + n * o.phases) % n] ?? 0) / total);
    // Little's law: bytes held = rate x (token-steps x step time) x bytes per token.
    const rates = o.models.map(
      (model, m) => ((shares[m] ?? 0) * o.load * o.poolBytes) / (model.tokenBytes * meanTokenSteps * o.stepSeconds),
    );
    phases.push({ startStep: p * stepsPerPhase, endStep: (p + 1) * stepsPerPhase, hotModel: p % n, shares, rates });
  }

  // Each model draws from its own stream, so adding a model does not reshuffle the others.
  const requests: { model: number; arrival: number; input: number; output: number }[] = [];
  for (let m = 0; m < n; m++) {
    const rand = mulberry32((o.seed * 0x9e3779b1 + m * 0x85ebca6b) >>> 0);
    const draw = lengthSampler(rand, lengths);
    for (const phase of phases) {
      const rate = phase.rates[m] ?? 0;
      if (rate <= 0) continue;
      const end = phase.endStep * o.stepSeconds;
      // Poisson is memoryless, so restarting the clock at each phase boundary is exact.
      let t = phase.startStep * o.stepSeconds;
      for (;;) {
        t += -Math.log(1 - rand()) / rate;
        if (t >= end) break;
        requests.push({ model: m, arrival: t, ...draw() });
      }
    }
  }
  requests.sort((a, b) => a.arrival - b.arrival || a.model - b.model);
  const out: TraceRequest[] = requests.map((r, id) => ({
    id,
    model: r.model,
    arrivalStep: Math.floor(r.arrival / o.stepSeconds),
    input: r.input,
    output: r.output,
  }));
  return {
    requests: out,
    phases,
    steps: stepsPerPhase * o.phases,
    meanTokenSteps,
    input: summarize(out.map((r) => r.input)),
    output: summarize(out.map((r) => r.output)),
  };
}
