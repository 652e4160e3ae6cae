/**
 * A latency model learnt from the iterations the engine actually runs, for devices and models
 * that have no offline profile (every CPU, every new model). One step's time is modelled as
 *
 *   t = fixed + perPrefillToken·P + perPrefillAttention·P·(P/seqs)/2 + perDecodeSeq·D + perDecodeContext·D·ctx
 *
 * where P is the step's prefill tokens over `seqs` sequences and D its decode sequences of mean
 * context ctx: weight streaming (fixed), linear layers per token, and attention per (token, cached
 * token).
 *
 * The coefficients are a regularised non-negative least-squares fit over the last `window` steps:
 * the window follows co-location slowdown and drift; the prior (the warm-up's measurement) holds
 * every direction the window does not exercise, so a long run of one shape (a request decoding
 * to the end of its context: thousands of steps with one sequence) cannot move the prefill terms
 * it says nothing about; non-negativity is a constraint of the fit, not a clamp on its output,
 * so what it predicts is what it fitted; and a step's time is clipped to within a factor of the
 * prediction before it enters the window, so one outlier moves the fit by a bounded amount while a
 * persistent change still moves it. {@link MeasuredLatencyModel.trusted} says
 * when its recent error is too high to refuse requests on.
 * @module
 */
import type { IterationSample, LatencyModel } from './latency-model.js';

const FEATURES = 5;
/** Typical size of each feature: the prior's weight is set in these units. */
const FEATURE_SCALE = [1, 128, 8192, 4, 1024];
/** The prior counts as this many steps of typical size in each direction: enough to hold a direction the window does not exercise, too little to outweigh one it does. */
const PRIOR_STEPS = 0.02;
/**
 * A step's time enters the fit clipped to [prediction / OUTLIER, prediction · OUTLIER]: on a shared
 * machine one step in twenty can take 10-50 times the usual (a GC pause, a descheduled thread), and
 * least squares would chase their mean; a persistent change still doubles or halves the prediction
 * per window.
 */
const OUTLIER = 2;

function features(prefillSeqs: number, prefillTokens: number, decodeSeqs: number, decodeContext: number): number[] {
  const p = prefillSeqs > 0 ? prefillTokens : 0;
  const perSeq = prefillSeqs > 0 ? prefillTokens / prefillSeqs : 0;
  return [1, p, (p * perSeq) / 2, decodeSeqs, decodeSeqs * decodeContext];
}

/** Options of {@link MeasuredLatencyModel}. */
export interface MeasuredLatencyOptions {
  /** Steps the fit looks back over; default 256. */
  readonly window?: number;
  /** A first guess, e.g. from a warm-up step: ms of a 1-sequence decode step and per prefill token. */
  readonly prior?: {
    readonly decodeStepMs: number;
    readonly prefillTokenMs: number;
    /** A decode step of `batch` sequences, measured: sets the cost per extra sequence. */
    readonly batchDecodeStepMs?: number;
    readonly batch?: number;
  };
}

/** See the module comment. */
export class MeasuredLatencyModel implements LatencyModel {
  readonly #window: number;
  /** fixed, perPrefillToken, perPrefillAttention, perDecodeSeq, perDecodeContext (ms). */
  readonly #w: number[];
  readonly #prior: number[];
  readonly #priorWeight: number[];
  /** Σ x·xᵀ and Σ x·y over the window, kept as steps enter and leave it. */
  readonly #xx = new Float64Array(FEATURES * FEATURES);
  readonly #xy = new Float64Array(FEATURES);
  readonly #ringX: Float64Array;
  readonly #ringY: Float64Array;
  #samples = 0;
  #relError = 0;

  constructor(options: MeasuredLatencyOptions = {}) {
    this.#window = Math.max(8, Math.floor(options.window ?? 256));
    const decode = options.prior?.decodeStepMs ?? 1;
    const perToken = options.prior?.prefillTokenMs ?? 0.05;
    const p = options.prior;
    // Measured: the slope between the 1- and the b-sequence decode; else a guess of a fifth.
    const perSeq = p?.batchDecodeStepMs !== undefined && p.batch !== undefined && p.batch > 1 ? Math.min(decode, Math.max(0, (p.batchDecodeStepMs - decode) / (p.batch - 1))) : 0.2 * decode;
    this.#prior = [decode - perSeq, perToken, 0, perSeq, 0];
    this.#w = [...this.#prior];
    this.#priorWeight = FEATURE_SCALE.map((s) => PRIOR_STEPS * s * s);
    this.#ringX = new Float64Array(this.#window * FEATURES);
    this.#ringY = new Float64Array(this.#window);
  }

  /** The fitted coefficients, in ms. */
  get coefficients(): { fixed: number; perPrefillToken: number; perPrefillAttention: number; perDecodeSeq: number; perDecodeContext: number; samples: number; meanRelativeError: number } {
    const [fixed, perPrefillToken, perPrefillAttention, perDecodeSeq, perDecodeContext] = this.#w;
    return { fixed: fixed!, perPrefillToken: perPrefillToken!, perPrefillAttention: perPrefillAttention!, perDecodeSeq: perDecodeSeq!, perDecodeContext: perDecodeContext!, samples: this.#samples, meanRelativeError: this.#relError };
  }

  /**
   * Whether its predictions are good enough to refuse a request on: recently within a factor of 2
   * of the measured step times. While it is not, a scheduler should admit and let it re-learn, never let a
   * wrong model lock its own model out.
   */
  get trusted(): boolean {
    return this.#relError <= 0.5;
  }

  #predict(x: readonly number[]): number {
    let t = 0;
    for (let i = 0; i < FEATURES; i++) t += this.#w[i]! * x[i]!;
    return Math.max(t, 1e-3);
  }

  prefillMs(batch: number, tokens: number): number {
    return this.#predict(features(Math.max(1, batch), tokens, 0, 0));
  }

  decodeMs(batch: number, context: number): number {
    return this.#predict(features(0, 0, batch, context));
  }

  observe(s: IterationSample): void {
    if (!(s.measuredMs > 0) || !Number.isFinite(s.measuredMs)) return;
    const x = features(s.prefillSeqs, s.prefillTokens, s.decodeSeqs, s.decodeContext);
    const predicted = this.#predict(x);
    // How wrong the prediction was before this step taught it: |error| over the larger of the two,
    // in [0, 1), so one stalled step cannot swamp the average (0.5: off by a factor of 2).
    const rel = Math.abs(predicted - s.measuredMs) / Math.max(predicted, s.measuredMs);
    this.#relError = this.#samples === 0 ? rel : 0.95 * this.#relError + 0.05 * rel;
    const y = Math.min(Math.max(s.measuredMs, predicted / OUTLIER), predicted * OUTLIER);
    const slot = this.#samples % this.#window;
    if (this.#samples >= this.#window) this.#accumulate(this.#ringX.subarray(slot * FEATURES, (slot + 1) * FEATURES), this.#ringY[slot]!, -1);
    this.#ringX.set(x, slot * FEATURES);
    this.#ringY[slot] = y;
    this.#accumulate(x, y, 1);
    this.#samples++;
    this.#fit();
  }

  #accumulate(x: ArrayLike<number>, y: number, sign: 1 | -1): void {
    for (let i = 0; i < FEATURES; i++) {
      this.#xy[i]! += sign * x[i]! * y;
      for (let j = 0; j < FEATURES; j++) this.#xx[i * FEATURES + j]! += sign * x[i]! * x[j]!;
    }
  }

  /**
   * min Σ (x·w − y)² + Σ λᵢ (wᵢ − priorᵢ)² over w ≥ 0, by projected coordinate descent from the
   * current w (a few sweeps suffice: it moves little per step).
   */
  #fit(): void {
    const w = this.#w;
    for (let sweep = 0; sweep < 8; sweep++) {
      for (let i = 0; i < FEATURES; i++) {
        const a = this.#xx[i * FEATURES + i]! + this.#priorWeight[i]!;
        let r = this.#xy[i]! + this.#priorWeight[i]! * this.#prior[i]!;
        for (let j = 0; j < FEATURES; j++) if (j !== i) r -= this.#xx[i * FEATURES + j]! * w[j]!;
        w[i] = Math.max(0, r / a);
      }
    }
  }
}
