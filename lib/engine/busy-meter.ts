/**
 * BusyMeter: the share of a device's time one replica's steps take, measured (an exponentially
 * decayed sum of step wall times over the time constant). It is what the re-planner believes
 * over its latency models: on a shared machine the load a model really puts on its device can
 * differ from what its warm-up predicted by a factor, and a move chosen on the prediction alone
 * can make things worse.
 * @module
 */
export class BusyMeter {
  readonly #tauMs: number;
  #sum = 0;
  #at: number;
  /** Since when it measures: the first τ of its life read low, so the share is scaled up then. */
  readonly #since: number;

  constructor(nowMs: number, tauMs = 3_000) {
    this.#tauMs = tauMs;
    this.#at = nowMs;
    this.#since = nowMs;
  }

  /** A step of `ms` ended at `nowMs`. */
  add(nowMs: number, ms: number): void {
    this.#decay(nowMs);
    this.#sum += ms;
  }

  /**
   * Busy share over the recent past, 0 to 1 (and above while steps of two replicas overlap). In
   * steady state busy `b` ms per ms leaves a decayed sum of b·τ.
   */
  share(nowMs: number): number {
    this.#decay(nowMs);
    // Young meters have integrated only (1 − e^(−age/τ)) of the full weight.
    const weight = 1 - Math.exp(-Math.max(nowMs - this.#since, 1) / this.#tauMs);
    return this.#sum / (this.#tauMs * weight);
  }

  /** Whether it has seen at least one time constant. */
  settled(nowMs: number): boolean {
    return nowMs - this.#since >= this.#tauMs;
  }

  #decay(nowMs: number): void {
    const dt = nowMs - this.#at;
    if (dt > 0) this.#sum *= Math.exp(-dt / this.#tauMs);
    this.#at = Math.max(this.#at, nowMs);
  }
}
