/**
 * The latency model: how long one iteration of one model takes, from the shape of its batch.
 * The cost model calibrates it offline from profiles; the local scheduler uses it online and
 * corrects it from the iterations it measures (co-location and drift make a device slower than
 * its solo profile says).
 * @module
 */
import { PlanError } from './errors.js';
import type { ProfileRow } from './profiles.js';

/** What the local scheduler asks of a latency model. All times in milliseconds. */
export interface LatencyModel {
  /** One iteration that prefills `tokens` prompt tokens spread over `batch` sequences. */
  prefillMs(batch: number, tokens: number): number;
  /** One decode iteration of `batch` sequences whose mean context is `context` tokens. */
  decodeMs(batch: number, context: number): number;
  /** Feeds back one measured iteration; a static (offline) model ignores it. */
  observe(sample: IterationSample): void;
}

/** The shape of one iteration: prefill chunks and decode tokens, run as one forward pass. */
export interface IterationShape {
  readonly prefillSeqs: number;
  readonly prefillTokens: number;
  readonly decodeSeqs: number;
  /** Mean context length of the decoding sequences. */
  readonly decodeContext: number;
}

/** A measured iteration. */
export interface IterationSample extends IterationShape {
  readonly measuredMs: number;
}

/**
 * Time of a mixed iteration. A prefill pass already streams the weights once, so decode tokens
 * riding along add only their batch-dependent part (decode(b) − decode(1)), not a second pass.
 */
export function iterationMs(model: LatencyModel, s: IterationShape): number {
  const p = s.prefillSeqs > 0 && s.prefillTokens > 0 ? model.prefillMs(s.prefillSeqs, s.prefillTokens) : 0;
  if (s.decodeSeqs <= 0) return p;
  const d = model.decodeMs(s.decodeSeqs, s.decodeContext);
  if (p === 0) return d;
  return p + Math.max(d - model.decodeMs(1, s.decodeContext), 0.05 * d);
}

/** Piecewise-linear interpolation over sorted `xs`, extrapolating linearly from the end segments. */
export function interpolate(xs: readonly number[], ys: readonly number[], x: number): number {
  const n = xs.length;
  if (n === 1) return ys[0]!;
  let i = 1;
  while (i < n - 1 && x > xs[i]!) i++;
  const x0 = xs[i - 1]!;
  const x1 = xs[i]!;
  const y0 = ys[i - 1]!;
  const y1 = ys[i]!;
  return y0 + ((y1 - y0) * (x - x0)) / (x1 - x0);
}

/**
 * The offline latency model of one (model, qformat, TP, MPS) configuration: the profile grid
 * (batch × prompt length), interpolated piecewise-linearly in batch and linearly in length, with
 * linear extrapolation beyond the grid as the reference estimator does. It passes through every
 * profiled point exactly, so a table lookup is its own fit test; between points it is the
 * straight line, which the profiles support (TTFT is close to linear in tokens, TPOT in batch).
 */
export class ProfileLatencyModel implements LatencyModel {
  readonly batches: readonly number[];
  readonly lengths: readonly number[];
  /** Decode context at each length: the mean over the profiled output (input + output / 2). */
  readonly contexts: readonly number[];
  /** ttftMs[length index][batch index]. */
  readonly ttftMs: readonly (readonly number[])[];
  /** tpotMs[length index][batch index]. */
  readonly tpotMs: readonly (readonly number[])[];
  readonly #floorMs: number;

  constructor(rows: readonly ProfileRow[], source = 'profile') {
    if (rows.length === 0) throw new PlanError('ERR_PROFILE_MISSING', source, 'rows', 'no profile rows for this configuration');
    const batches = [...new Set(rows.map((r) => r.batchSize))].sort((a, b) => a - b);
    const lengths = [...new Set(rows.map((r) => r.inputLen))].sort((a, b) => a - b);
    const ttft: number[][] = [];
    const tpot: number[][] = [];
    const contexts: number[] = [];
    for (const len of lengths) {
      const tRow: number[] = [];
      const pRow: number[] = [];
      let out = 0;
      for (const b of batches) {
        const row = rows.find((r) => r.inputLen === len && r.batchSize === b);
        if (row === undefined) {
          throw new PlanError('ERR_PROFILE_CORRUPT', source, 'grid', `no row for batch ${b} at input ${len}: the profile must be a full batch × length grid`);
        }
        tRow.push(row.ttft * 1000);
        pRow.push(row.tpot * 1000);
        out = row.outputLen;
      }
      ttft.push(tRow);
      tpot.push(pRow);
      contexts.push(len + out / 2);
    }
    this.batches = batches;
    this.lengths = lengths;
    this.contexts = contexts;
    this.ttftMs = ttft;
    this.tpotMs = tpot;
    // Extrapolating down to tiny chunks can cross zero; no real iteration is cheaper than a
    // fraction of the smallest measured step.
    this.#floorMs = 0.25 * Math.min(...tpot.flat());
  }

  prefillMs(batch: number, tokens: number): number {
    const perSeq = tokens / Math.max(batch, 1);
    const atLengths = this.ttftMs.map((row) => interpolate(this.batches, row, batch));
    // A profile at one prompt length (the reference's QoQ rows) has no length slope: scale in
    // proportion to tokens, which prefill's compute is, to first order.
    if (this.lengths.length === 1) return Math.max(this.#floorMs, (atLengths[0]! * perSeq) / this.lengths[0]!);
    return Math.max(this.#floorMs, interpolate(this.lengths, atLengths, perSeq));
  }

  decodeMs(batch: number, context: number): number {
    const atContexts = this.tpotMs.map((row) => interpolate(this.batches, row, batch));
    return Math.max(this.#floorMs, interpolate(this.contexts, atContexts, context));
  }

  observe(): void {}
}

/** Options of {@link OnlineLatencyModel}. */
export interface OnlineLatencyOptions {
  /** Weight of the newest measurement in the running correction; default 0.2. */
  readonly alpha?: number;
}

/**
 * A latency model that learns: the offline prediction times a correction factor per kind of
 * iteration (with prefill, decode only), each an exponentially weighted mean of measured /
 * predicted. It tracks co-location slowdown and drift within a few iterations, which the
 * reference's static batch-1 figure cannot.
 */
export class OnlineLatencyModel implements LatencyModel {
  readonly base: LatencyModel;
  readonly #alpha: number;
  #prefillCorrection = 1;
  #decodeCorrection = 1;
  #samples = 0;

  constructor(base: LatencyModel, options: OnlineLatencyOptions = {}) {
    this.base = base;
    this.#alpha = options.alpha ?? 0.2;
  }

  /** Current correction factors (measured / offline prediction). */
  get corrections(): { prefill: number; decode: number; samples: number } {
    return { prefill: this.#prefillCorrection, decode: this.#decodeCorrection, samples: this.#samples };
  }

  prefillMs(batch: number, tokens: number): number {
    return this.base.prefillMs(batch, tokens) * this.#prefillCorrection;
  }

  decodeMs(batch: number, context: number): number {
    return this.base.decodeMs(batch, context) * this.#decodeCorrection;
  }

  observe(s: IterationSample): void {
    if (!(s.measuredMs > 0)) return;
    this.#samples++;
    const a = this.#alpha;
    const clamp = (r: number): number => Math.min(10, Math.max(0.1, r));
    if (s.prefillSeqs === 0 || s.prefillTokens === 0) {
      if (s.decodeSeqs === 0) return;
      const r = clamp(s.measuredMs / this.base.decodeMs(s.decodeSeqs, s.decodeContext));
      this.#decodeCorrection = (1 - a) * this.#decodeCorrection + a * r;
      return;
    }
    // The decode share of a mixed step is predicted with the decode correction; what is left is
    // the prefill's, so one slow kind does not bias the other.
    const decodePart = iterationMs(this, s) - this.prefillMs(s.prefillSeqs, s.prefillTokens);
    const prefillBase = this.base.prefillMs(s.prefillSeqs, s.prefillTokens);
    const r = clamp((s.measuredMs - decodePart) / prefillBase);
    this.#prefillCorrection = (1 - a) * this.#prefillCorrection + a * r;
  }
}
