/**
 * What the engine counts per served model for `engine.stats()`: outcomes, SLO attainment and
 * latency percentiles over finished requests, and generated-token throughput.
 * @module
 */
import type { FinishReason, GenerationResult } from '../request.js';

/**
 * p50 / p99 of a latency over the last {@link LATENCY_WINDOW} finished requests, and its mean over
 * all of them, ms; undefined until something was measured.
 */
export interface Percentiles {
  readonly p50: number | undefined;
  readonly p99: number | undefined;
  readonly mean: number | undefined;
}

/** Counters of one model since it was loaded. */
export interface ModelCounters {
  readonly finished: Readonly<Record<FinishReason, number>>;
  /** Of finished, non-aborted requests: the share that met the TTFT and TPOT SLOs. */
  readonly sloAttainment: number | undefined;
  readonly ttftMs: Percentiles;
  readonly tpotMs: Percentiles;
  readonly e2eMs: Percentiles;
  readonly generatedTokens: number;
  readonly promptTokens: number;
  /** Generated tokens per second of wall time between the first arrival and the latest end. */
  readonly tokensPerSecond: number | undefined;
  readonly preemptions: number;
  /** Requests the scheduler found unable to meet their TTFT SLO (dropped or deferred). */
  readonly sloRejected: number;
  readonly steps: number;
  /** Mean wall time of this model's executor steps. */
  readonly stepMs: number | undefined;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Requests the latency percentiles of `stats()` look back over. */
export const LATENCY_WINDOW = 2048;

/**
 * One latency's recent samples in a ring of fixed size, and a running sum for the mean over all:
 * memory and the cost of `stats()` stay bounded however long the engine serves.
 */
class LatencyWindow {
  readonly #ring = new Float64Array(LATENCY_WINDOW);
  #count = 0;
  #sum = 0;

  push(ms: number): void {
    this.#ring[this.#count % LATENCY_WINDOW] = ms;
    this.#count++;
    this.#sum += ms;
  }

  summary(): Percentiles {
    const n = Math.min(this.#count, LATENCY_WINDOW);
    const s = Array.from(this.#ring.subarray(0, n)).sort((a, b) => a - b);
    return { p50: percentile(s, 0.5), p99: percentile(s, 0.99), mean: this.#count === 0 ? undefined : this.#sum / this.#count };
  }
}

/** Accumulates {@link ModelCounters}. */
export class ModelStatsRecorder {
  readonly #finished: Record<FinishReason, number> = { stop: 0, length: 0, abort: 0, error: 0 };
  readonly #ttft = new LatencyWindow();
  readonly #tpot = new LatencyWindow();
  readonly #e2e = new LatencyWindow();
  #judged = 0;
  #met = 0;
  #generated = 0;
  #prompt = 0;
  #firstArrivalMs: number | undefined;
  #lastEndMs: number | undefined;
  #preemptions = 0;
  #sloRejected = 0;
  #steps = 0;
  #stepMsSum = 0;
  #recentMet = 0;
  #recentWeight = 0;

  arrived(nowMs: number): void {
    this.#firstArrivalMs ??= nowMs;
  }

  sloRejected(): void {
    this.#sloRejected++;
  }

  step(ms: number): void {
    this.#steps++;
    this.#stepMsSum += ms;
  }

  /**
   * SLO attainment of the last ~20 judged requests (a decayed mean): what a re-plan checks before
   * it moves anything. Undefined before any.
   */
  get recentAttainment(): number | undefined {
    return this.#recentWeight === 0 ? undefined : this.#recentMet / this.#recentWeight;
  }

  finished(r: GenerationResult, nowMs: number): void {
    if (r.sloMet !== undefined) {
      this.#recentWeight = 0.95 * this.#recentWeight + 1;
      this.#recentMet = 0.95 * this.#recentMet + (r.sloMet ? 1 : 0);
    }
    this.#finished[r.finishReason]++;
    this.#generated += r.tokens.length;
    this.#prompt += r.promptTokens;
    this.#preemptions += r.preemptions;
    this.#lastEndMs = nowMs;
    if (r.timings.ttftMs !== undefined) this.#ttft.push(r.timings.ttftMs);
    if (r.timings.tpotMs !== undefined) this.#tpot.push(r.timings.tpotMs);
    this.#e2e.push(r.timings.e2eMs);
    if (r.sloMet !== undefined) {
      this.#judged++;
      if (r.sloMet) this.#met++;
    }
  }

  /** Mean prompt and generated tokens of the requests that finished (not aborted); undefined before any. */
  typicalLengths(): { promptTokens: number; outputTokens: number } | undefined {
    const n = this.#finished.stop + this.#finished.length + this.#finished.error;
    return n === 0 ? undefined : { promptTokens: this.#prompt / n, outputTokens: this.#generated / n };
  }

  counters(): ModelCounters {
    const span = this.#firstArrivalMs === undefined || this.#lastEndMs === undefined ? 0 : this.#lastEndMs - this.#firstArrivalMs;
    return {
      finished: { ...this.#finished },
      sloAttainment: this.#judged === 0 ? undefined : this.#met / this.#judged,
      ttftMs: this.#ttft.summary(),
      tpotMs: this.#tpot.summary(),
      e2eMs: this.#e2e.summary(),
      generatedTokens: this.#generated,
      promptTokens: this.#prompt,
      tokensPerSecond: span > 0 ? (this.#generated * 1000) / span : undefined,
      preemptions: this.#preemptions,
      sloRejected: this.#sloRejected,
      steps: this.#steps,
      stepMs: this.#steps === 0 ? undefined : this.#stepMsSum / this.#steps,
    };
  }
}
