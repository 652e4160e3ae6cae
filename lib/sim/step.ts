/**
 * Starting a replica's next iteration and charging its time: the solo step time from the latency
 * profile (the fitted roofline past its grid), slowed by what the steps co-located on its devices
 * demand (or by their count under the older rule), plus the KV policy's map overhead. The iteration's end is an event.
 * @module
 */
import { iterationMs } from '../scheduler/latency-model.js';
import { contenders, recordDecodeBatch } from './adbs.js';
import { fastForward } from './fast-forward.js';
import { decideIteration } from './iteration.js';
import { checkDrained } from './migration.js';
import { outsideProfile } from './profile-bounds.js';
import { setActive, waitingWindow } from './replica-queue.js';
import type { Replica, Seq, SimContext, Work } from './state.js';

/** Starts `r`'s next iteration at `now` if it is free, ready and has anything to do. */
export function start(ctx: SimContext, r: Replica, now: number): void {
  if (r.busy || now > ctx.stopMs || now < r.readyAtMs) return;
  if (r.queued === 0 && r.running.length === 0) {
    setActive(r, false);
    if (r.retiring || r.prefillLane?.retiring === true) checkDrained(ctx, r.model.id, now);
    return;
  }
  const waiting = waitingWindow(r, ctx.window);
  const byId = new Map<number, Seq>();
  for (const s of waiting) byId.set(s.id, s);
  for (const s of r.running) byId.set(s.id, s);

  // Fast path: nothing waits and everything decodes; several identical decode steps at once.
  let work: Work | undefined;
  const allDecoding = r.running.every((s) => s.computedTokens >= s.targetTokens);
  if (r.queued === 0 && allDecoding && r.running.length > 0 && ctx.maxFF > 1) work = fastForward(ctx, r, now);
  if (work === undefined) work = decideIteration(ctx, r, now, waiting, byId);
  if (work === undefined) return;
  charge(ctx, r, work, now);
}

/** Times `work` on `r`'s devices and schedules its end. */
function charge(ctx: SimContext, r: Replica, work: Work, now: number): void {
  const { costModel } = ctx;
  setActive(r, true);
  // The profile inside its grid, the roofline past it (CostEntry.stepLatency).
  const solo = iterationMs(r.entry.stepLatency, work.shape);
  const prefillMs = work.shape.prefillSeqs > 0 ? r.entry.stepLatency.prefillMs(work.shape.prefillSeqs, work.shape.prefillTokens) : 0;
  let slow: number;
  if (ctx.workInterference) {
    const demand = costModel.stepDemand(r.entry, work.shape, solo);
    slow = 1;
    for (const d of r.devices) {
      slow = Math.max(slow, costModel.contendedSlowdown(demand, contenders(ctx, r, d)));
      d.steps.set(r.index, demand);
    }
  } else {
    const k = Math.max(...r.devices.map((d) => d.active));
    slow = costModel.colocationSlowdown(k, solo > 0 ? Math.min(1, prefillMs / solo) : 0);
  }
  if (outsideProfile(r.entry.latency, work.shape)) ctx.extrapolated += work.steps;
  if (work.decode.length > 0) recordDecodeBatch(r, work.decode.length, work.steps);
  let overhead = 0;
  for (let i = 0; i < r.devices.length; i++) overhead += r.devices[i]!.account.takeOverheadMs(r.slots[i]!);
  work.ms = solo * slow * work.steps + overhead;
  r.work = work;
  r.busy = true;
  ctx.iterations += work.steps;
  ctx.heap.push(now + work.ms, { kind: 'end', replica: r });
}
