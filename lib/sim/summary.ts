/**
 * A run's outcomes summed up: SLO attainment (TTFT and, where set, mean TPOT), token throughput,
 * latency quantiles, per-model counts.
 * @module
 */
import type { RequestOutcome, SimResult } from './sim-types.js';
import type { OutcomeRecord } from './state.js';

/** The run's result from every request's outcome and the run's counters. */
export function summarize(system: string, outcomes: Map<number, OutcomeRecord>, preemptions: number, iterations: number, extrapolated: number): Omit<SimResult, 'migrations'> {
  const list: RequestOutcome[] = [];
  const perModel: Record<string, { arrivals: number; attained: number; dropped: number; finished: number; sloMs: number }> = {};
  let attained = 0;
  let finished = 0;
  let dropped = 0;
  let tokens = 0;
  let lastFinish = 0;
  const ttfts: number[] = [];
  const tpots: number[] = [];
  for (const [id, o] of [...outcomes].sort((a, b) => a[0] - b[0])) {
    const s = o.seq;
    const pm = (perModel[o.model] ??= { arrivals: 0, attained: 0, dropped: 0, finished: 0, sloMs: o.sloMs });
    pm.arrivals++;
    const ttft = s.started ? s.firstTokenMs - s.arrivalMs : undefined;
    const tpot = o.state === 'finished' && s.outputTokens > 1 ? (s.finishMs - s.firstTokenMs) / (s.outputTokens - 1) : undefined;
    if (ttft !== undefined) ttfts.push(ttft);
    if (tpot !== undefined) tpots.push(tpot);
    // A TPOT SLO is judged on the whole output, so a request still running when the run stops misses it.
    const tpotMet = o.tpotSloMs === undefined || (o.state === 'finished' && (tpot === undefined || tpot <= o.tpotSloMs));
    const met = ttft !== undefined && ttft < o.sloMs && tpotMet;
    if (met) {
      attained++;
      pm.attained++;
    }
    if (o.state === 'dropped') {
      dropped++;
      pm.dropped++;
    }
    if (o.state === 'finished') {
      finished++;
      pm.finished++;
      tokens += s.outputTokens;
      lastFinish = Math.max(lastFinish, s.finishMs);
    }
    list.push({
      id,
      model: o.model,
      arrivalMs: s.arrivalMs,
      state: o.state,
      ...(ttft !== undefined && { ttftMs: ttft }),
      ...(tpot !== undefined && { tpotMs: tpot }),
      ...(o.state === 'finished' && { finishMs: s.finishMs }),
      outputTokens: s.outputTokens,
      sloMs: o.sloMs,
      attained: met,
      ...(o.tpotSloMs !== undefined && { tpotSloMs: o.tpotSloMs }),
    });
  }
  const n = outcomes.size;
  return {
    system,
    arrivals: n,
    finished,
    dropped,
    inFlight: n - finished - dropped,
    sloAttainment: n === 0 ? 1 : attained / n,
    tokenThroughput: lastFinish > 0 ? (tokens / lastFinish) * 1000 : 0,
    ttftP50Ms: quantile(ttfts, 0.5),
    ttftP99Ms: quantile(ttfts, 0.99),
    tpotP50Ms: quantile(tpots, 0.5),
    tpotP99Ms: quantile(tpots, 0.99),
    preemptions,
    iterations,
    extrapolatedShare: iterations > 0 ? extrapolated / iterations : 0,
    perModel,
    outcomes: list,
  };
}

/** The q-quantile (nearest rank) of `xs`; NaN when empty. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
}
