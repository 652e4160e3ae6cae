/**
 * A latency model learnt from the iterations the engine actually runs, for devices and models
 * that have no offline profile (every CPU, every new model). One step's time is modelled as
 *
 *   t = fixed + perPrefillToken·P + perPrefillAttention·P·(P/seqs)/2 + perDecodeSeq·D + perDecodeContext·D·ctx
 *
 * where P is the step's prefill tokens over `seqs` sequences and D its decode sequences of mean
 * context ctx: weight streaming (fixed), linear layers per token, and attention per (token, cached
 * token). The coefficients are fitted by recursive least squares with forgetting, so they follow
 * co-location slowdown and drift, and they are kept non-negative so an extrapolation never
 * predicts a free step.
 * @module
 */
import type { IterationSample, LatencyModel } from './latency-model.js';

const FEATURES = 5;

function features(prefillSeqs: number, prefillTokens: number, decodeSeqs: number, decodeContext: number): number[] {
  const p = prefillSeqs > 0 ? prefillTokens : 0;
  const perSeq = prefillSeqs > 0 ? prefillTokens / prefillSeqs : 0;
  return [1, p, (p * perSeq) / 2, decodeSeqs, decodeSeqs * decodeContext];
}

/** Options of {@link MeasuredLatencyModel}. */
export interface MeasuredLatencyOptions {
  /** Weight kept by old samples per new one (RLS forgetting factor); default 0.98. */
  readonly forgetting?: number;
  /** A first guess, e.g. from a warm-up step: ms of a 1-sequence decode step and per prefill token. */
  readonly prior?: { readonly decodeStepMs: number; readonly prefillTokenMs: number };
}

/** See the module comment. */
export class MeasuredLatencyModel implements LatencyModel {
  readonly #lambda: number;
  /** fixed, perPrefillToken, perPrefillAttention, perDecodeSeq, perDecodeContext (ms). */
  readonly #w: number[];
  /** Inverse covariance of the RLS estimate, row-major FEATURES × FEATURES. */
  readonly #p: number[];
  #samples = 0;
  #relError = 0;

  constructor(options: MeasuredLatencyOptions = {}) {
    this.#lambda = options.forgetting ?? 0.98;
    const decode = options.prior?.decodeStepMs ?? 1;
    const perToken = options.prior?.prefillTokenMs ?? 0.05;
    this.#w = [0.8 * decode, perToken, 0, 0.2 * decode, 0];
    this.#p = new Array<number>(FEATURES * FEATURES).fill(0);
    // Prior spread per coefficient of about three times its expected size: the first few
    // measured steps dominate it, whatever the model and machine.
    const scale = [decode, perToken, perToken / 64, decode, decode / 256];
    for (let i = 0; i < FEATURES; i++) this.#p[i * FEATURES + i] = (3 * scale[i]!) ** 2;
  }

  /** The fitted coefficients, in ms. */
  get coefficients(): { fixed: number; perPrefillToken: number; perPrefillAttention: number; perDecodeSeq: number; perDecodeContext: number; samples: number; meanRelativeError: number } {
    const [fixed, perPrefillToken, perPrefillAttention, perDecodeSeq, perDecodeContext] = this.#w.map((v) => Math.max(0, v));
    return { fixed: fixed!, perPrefillToken: perPrefillToken!, perPrefillAttention: perPrefillAttention!, perDecodeSeq: perDecodeSeq!, perDecodeContext: perDecodeContext!, samples: this.#samples, meanRelativeError: this.#relError };
  }

  #predict(x: readonly number[]): number {
    let t = 0;
    for (let i = 0; i < FEATURES; i++) t += Math.max(0, this.#w[i]!) * x[i]!;
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
    // How wrong the prediction was before this sample taught it (EWMA of |error| / measured).
    const rel = Math.abs(this.#predict(x) - s.measuredMs) / s.measuredMs;
    this.#relError = this.#samples === 0 ? rel : 0.95 * this.#relError + 0.05 * rel;
    const p = this.#p;
    const px = new Array<number>(FEATURES).fill(0);
    for (let i = 0; i < FEATURES; i++) for (let j = 0; j < FEATURES; j++) px[i]! += p[i * FEATURES + j]! * x[j]!;
    let denom = this.#lambda;
    for (let i = 0; i < FEATURES; i++) denom += x[i]! * px[i]!;
    let predicted = 0;
    for (let i = 0; i < FEATURES; i++) predicted += this.#w[i]! * x[i]!;
    const err = s.measuredMs - predicted;
    for (let i = 0; i < FEATURES; i++) this.#w[i]! += (px[i]! / denom) * err;
    for (let i = 0; i < FEATURES; i++) {
      for (let j = 0; j < FEATURES; j++) p[i * FEATURES + j] = (p[i * FEATURES + j]! - (px[i]! * px[j]!) / denom) / this.#lambda;
    }
    // Bound the covariance so a long run of one shape cannot blow up the other directions.
    for (let i = 0; i < FEATURES * FEATURES; i++) if (!Number.isFinite(p[i]!) || Math.abs(p[i]!) > 1e6) p[i] = Math.sign(p[i]!) * 1e6 || 0;
    this.#samples++;
  }
}
