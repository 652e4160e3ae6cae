/**
 * Replays a timed workload (the simulator's {@link Arrival}s) against a real {@link Engine} in
 * wall-clock time and reports what each model got: SLO attainment, TTFT/TPOT percentiles and
 * token throughput. The demo and the serving benchmark run the same arrivals through each policy
 * with this, so their numbers compare like for like.
 * @module
 */
import type { Engine } from '../engine.js';
import { percentile } from '../engine/model-stats.js';
import type { GenerationResult } from '../request.js';
import type { Arrival } from './workload.js';

/** Options of {@link replayWorkload}. */
export interface ReplayOptions {
  /** Prompt token ids of an arrival (its `promptTokens` long). */
  readonly promptFor: (a: Arrival) => number[];
  /** Called after each request ends with (ended, total). */
  readonly onProgress?: (ended: number, total: number) => void;
  readonly signal?: AbortSignal;
}

/** One model's outcome over a replay. */
export interface ReplayModelReport {
  readonly model: string;
  readonly requests: number;
  /** Requests that met TTFT and TPOT SLOs over all requests (dropped and errored count as misses). */
  readonly sloAttainment: number;
  readonly ttftP50Ms: number | undefined;
  readonly ttftP99Ms: number | undefined;
  readonly tpotP50Ms: number | undefined;
  readonly tpotP99Ms: number | undefined;
  /** Output tokens of all its requests over the replay's wall time. */
  readonly tokensPerSecond: number;
  /** Output tokens of requests that met their SLO, per second (goodput). */
  readonly goodTokensPerSecond: number;
  readonly finished: Readonly<Record<GenerationResult['finishReason'], number>>;
  readonly preemptions: number;
}

/** What {@link replayWorkload} measured. */
export interface ReplayReport {
  readonly wallMs: number;
  readonly models: readonly ReplayModelReport[];
  /** Over all models. */
  readonly sloAttainment: number;
  readonly tokensPerSecond: number;
  readonly goodTokensPerSecond: number;
}

/** Sends each arrival at its time (`maxTokens` = its output length, no early stop) and waits for all. */
export async function replayWorkload(engine: Engine, arrivals: readonly Arrival[], options: ReplayOptions): Promise<ReplayReport> {
  const prompts = arrivals.map((a) => options.promptFor(a));
  const results: Promise<GenerationResult>[] = [];
  let ended = 0;
  const start = performance.now();
  for (let i = 0; i < arrivals.length; i++) {
    const a = arrivals[i]!;
    const wait = start + a.arrivalMs - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    if (options.signal?.aborted) break;
    const run = engine.generate({ model: a.model, tokens: prompts[i]!, maxTokens: a.outputTokens, stopTokens: [], ...(options.signal === undefined ? {} : { signal: options.signal }) });
    results.push(
      run.result.then((r) => {
        options.onProgress?.(++ended, arrivals.length);
        return r;
      }),
    );
  }
  const all = await Promise.all(results);
  const wallMs = performance.now() - start;
  const byModel = new Map<string, GenerationResult[]>();
  all.forEach((r, i) => {
    const m = arrivals[i]!.model;
    byModel.set(m, [...(byModel.get(m) ?? []), r]);
  });
  const models = [...byModel.entries()].map(([model, rs]) => summarize(model, rs, wallMs));
  const total = all.length;
  const met = all.filter((r) => r.sloMet === true).length;
  const tokens = all.reduce((a, r) => a + r.tokens.length, 0);
  const good = all.filter((r) => r.sloMet === true).reduce((a, r) => a + r.tokens.length, 0);
  return {
    wallMs,
    models,
    sloAttainment: total === 0 ? 1 : met / total,
    tokensPerSecond: (tokens * 1000) / wallMs,
    goodTokensPerSecond: (good * 1000) / wallMs,
  };
}

function summarize(model: string, rs: readonly GenerationResult[], wallMs: number): ReplayModelReport {
  const sorted = (xs: (number | undefined)[]): number[] => xs.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  const ttft = sorted(rs.map((r) => r.timings.ttftMs));
  const tpot = sorted(rs.map((r) => r.timings.tpotMs));
  const finished = { stop: 0, length: 0, abort: 0, error: 0 };
  for (const r of rs) finished[r.finishReason]++;
  return {
    model,
    requests: rs.length,
    sloAttainment: rs.filter((r) => r.sloMet === true).length / rs.length,
    ttftP50Ms: percentile(ttft, 0.5),
    ttftP99Ms: percentile(ttft, 0.99),
    tpotP50Ms: percentile(tpot, 0.5),
    tpotP99Ms: percentile(tpot, 0.99),
    tokensPerSecond: (rs.reduce((a, r) => a + r.tokens.length, 0) * 1000) / wallMs,
    goodTokensPerSecond: (rs.filter((r) => r.sloMet === true).reduce((a, r) => a + r.tokens.length, 0) * 1000) / wallMs,
    finished,
    preemptions: rs.reduce((a, r) => a + r.preemptions, 0),
  };
}
