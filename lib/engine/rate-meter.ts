/**
 * A model's request arrival rate, measured two ways: arrivals in a sliding window (what happened
 * lately, exactly) and an exponentially decayed count (smooth, and defined from the first
 * request on). The decayed estimate starts at the rate the user expected, so placement at load
 * and the first re-plans use that, and measurement takes over as arrivals come in.
 * @module
 */

/** Options of {@link RateMeter}. */
export interface RateMeterOptions {
  /** Rate before anything arrived, requests per second; default 1. */
  readonly expected?: number;
  /** Sliding window, ms; default 10,000. */
  readonly windowMs?: number;
  /** Time constant of the decayed estimate, ms; default 5,000. */
  readonly tauMs?: number;
}

/** Both estimates, requests per second. */
export interface ArrivalRate {
  readonly windowPerSecond: number;
  readonly ewmaPerSecond: number;
}

/** See the module comment. */
export class RateMeter {
  readonly #windowMs: number;
  readonly #tauMs: number;
  /** Arrival times in the window, oldest first (a ring would do; arrays shift cheaply at these sizes). */
  readonly #times: number[] = [];
  #ewma: number;
  #at: number;

  constructor(nowMs: number, options: RateMeterOptions = {}) {
    this.#windowMs = options.windowMs ?? 10_000;
    this.#tauMs = options.tauMs ?? 5_000;
    this.#ewma = options.expected ?? 1;
    this.#at = nowMs;
  }

  arrived(nowMs: number): void {
    this.#decay(nowMs);
    this.#ewma += 1000 / this.#tauMs;
    this.#times.push(nowMs);
    this.#trim(nowMs);
  }

  rate(nowMs: number): ArrivalRate {
    this.#decay(nowMs);
    this.#trim(nowMs);
    return { windowPerSecond: (this.#times.length * 1000) / this.#windowMs, ewmaPerSecond: this.#ewma };
  }

  /** A decayed count of impulses of height 1/τ estimates the rate: in steady state it equals it. */
  #decay(nowMs: number): void {
    const dt = nowMs - this.#at;
    if (dt > 0) this.#ewma *= Math.exp(-dt / this.#tauMs);
    this.#at = Math.max(this.#at, nowMs);
  }

  #trim(nowMs: number): void {
    const from = nowMs - this.#windowMs;
    let drop = 0;
    while (drop < this.#times.length && this.#times[drop]! < from) drop++;
    if (drop > 0) this.#times.splice(0, drop);
  }
}
