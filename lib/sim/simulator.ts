/**
 * The discrete-event simulator: every replica of a placement plan runs the local scheduler's
 * policy over a simulated device that charges cost-model time per iteration (slowed by the models
 * active beside it), with a KV policy accounting memory. Same seed and inputs, same result.
 *
 * Time only moves at events: an arrival, the end of a replica's iteration, a retry of a replica
 * that could do nothing (short of memory), or a re-placement. This file is the event loop; the
 * state is built in setup.ts, a step is decided in iteration.ts (fast-forward.ts for decode-only
 * stretches), timed in step.ts and completed in finish.ts; migration.ts moves replicas; summary.ts
 * sums the outcomes up.
 * @module
 */
import { adaptQuotas, ADBS_ADAPT_MS } from './adbs.js';
import { finishIteration } from './finish.js';
import { applyReplan, bringUp } from './migration.js';
import { enqueue, leastLoaded } from './replica-queue.js';
import { setUp } from './setup.js';
import type { SimConfig, SimResult } from './sim-types.js';
import type { Seq, SimContext } from './state.js';
import { start } from './step.js';
import { summarize } from './summary.js';

export type { RequestOutcome, SimConfig, SimMigration, SimReplan, SimResult, SimSystem } from './sim-types.js';
export { outsideProfile, ttftPerTokenMs } from './profile-bounds.js';
export { quantile } from './summary.js';

/** Runs one simulation. */
export function simulate(config: SimConfig): SimResult {
  const ctx = setUp(config);
  const { heap, stopMs } = ctx;
  const after = config.replan?.plan;
  if (config.replan !== undefined) heap.push(config.replan.atMs, { kind: 'replan' });
  const step = (r: Parameters<typeof start>[1], now: number): void => start(ctx, r, now);

  // Main loop: arrivals merge with the event heap in time order (arrivals first on ties).
  let ai = 0;
  const arrivals = config.arrivals;
  for (;;) {
    const ta = ai < arrivals.length ? arrivals[ai]!.arrivalMs : Infinity;
    const te = heap.peekTime();
    if (ta === Infinity && te === Infinity) break;
    if (Math.min(ta, te) > stopMs) break;
    if (ta <= te) {
      const a = arrivals[ai++]!;
      const list = (after !== undefined && a.arrivalMs >= config.replan!.atMs ? ctx.byModelAfter : ctx.byModel).get(a.model);
      arrive(ctx, a, list?.[0]?.sloMs);
      if (list === undefined || list.length === 0) {
        ctx.outcomes.get(a.id)!.state = 'dropped';
        continue;
      }
      // Join the replica with the least outstanding work.
      const best = leastLoaded(list);
      enqueue(best, ctx.outcomes.get(a.id)!.seq);
      step(best, a.arrivalMs);
    } else {
      const { time, item } = heap.pop()!;
      if (item.kind === 'end') finishIteration(ctx, item.replica, time);
      else if (item.kind === 'replan') applyReplan(ctx, time, step);
      else if (item.kind === 'load') bringUp(ctx, item.model, time);
      else if (item.kind === 'adapt') {
        adaptQuotas(ctx);
        for (const r of ctx.replicas) if (r.adbs !== undefined) step(r, time);
        if (time + ADBS_ADAPT_MS <= stopMs) heap.push(time + ADBS_ADAPT_MS, { kind: 'adapt' });
      }
      else {
        item.replica.wakePending = false;
        step(item.replica, time);
      }
    }
  }
  return { ...summarize(config.system.name, ctx.outcomes, ctx.preemptions, ctx.iterations, ctx.extrapolated), migrations: ctx.migrations };
}

/** Records an arrival as a queued request with its deadline (the serving replica's SLO, else the model's). */
function arrive(ctx: SimContext, a: SimConfig['arrivals'][number], replicaSloMs: number | undefined): void {
  const spec = ctx.specs.get(a.model);
  const slo = replicaSloMs ?? spec?.slo?.ttftMs ?? 0;
  const seq: Seq = {
    id: a.id,
    arrivalMs: a.arrivalMs,
    deadlineMs: a.arrivalMs + slo,
    priority: spec?.priority ?? 0,
    promptTokens: a.promptTokens,
    outputTokens: a.outputTokens,
    decodedTokens: 0,
    computedTokens: 0,
    targetTokens: a.promptTokens,
    blocks: 0,
    started: false,
    firstTokenMs: NaN,
    finishMs: NaN,
  };
  ctx.outcomes.set(a.id, { seq, model: a.model, sloMs: slo, tpotSloMs: spec?.slo?.tpotMs, state: 'queued' });
}
