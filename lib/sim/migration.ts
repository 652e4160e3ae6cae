/**
 * Online re-placement in a run: at the re-plan event the moved replicas stop taking requests and
 * hand their not-yet-started ones to the new plan's replicas; once every old replica of a model
 * has drained, its new replicas load weights (bytes per device / host-to-device bandwidth) and
 * then start; with `overlap` they load at once while the old ones drain (make-before-break).
 * @module
 */
import { enqueue, leastLoaded, waitingWindow } from './replica-queue.js';
import type { Replica, SimContext } from './state.js';

/** Starts a model's new replicas (after their weights load) once its old replicas hold nothing. */
export function checkDrained(ctx: SimContext, model: string, now: number): void {
  const holds = (r: Replica | undefined): boolean => r !== undefined && (r.queued > 0 || r.running.length > 0 || r.busy);
  // Under the prefill/decode split a replica has drained when both of its jobs have.
  if (ctx.readyModels.has(model) || ctx.retiring.some((r) => r.model.id === model && (holds(r) || holds(r.decodeLane)))) return;
  bringUp(ctx, model, now);
}

/** Starts `model`'s new replicas once their weights are loaded from `now`. */
function bringUp(ctx: SimContext, model: string, now: number): void {
  ctx.readyModels.add(model);
  for (const r of ctx.fresh) {
    if (r.model.id !== model) continue;
    r.readyAtMs = now + ((r.entry.weightBytes / r.entry.tp) / ctx.hostToDeviceBytesPerS) * 1000;
    if (r.decodeLane !== undefined) r.decodeLane.readyAtMs = r.readyAtMs;
    ctx.migrations.push({ model, replica: r.index, devices: r.devices.map((d) => [...ctx.devices].find(([, x]) => x === d)![0]), drainedAtMs: now, readyAtMs: r.readyAtMs });
    ctx.heap.push(r.readyAtMs, { kind: 'wake', replica: r });
    r.wakePending = true;
  }
}

/** The re-plan event: moved replicas retire, handing queued requests over; `start` steps a replica. */
export function applyReplan(ctx: SimContext, time: number, start: (r: Replica, now: number) => void): void {
  for (const r of ctx.retiring) {
    r.retiring = true;
    // Requests not yet started hold no KV: they move to the new plan's replicas of the model
    // at once; only the running ones drain where they are.
    const to = ctx.byModelAfter.get(r.model.id);
    if (to === undefined || to.length === 0) continue;
    for (const seq of waitingWindow(r, ctx.window).length > 0 ? r.queue.slice(r.head).filter((q) => !r.gone.has(q.id)) : []) {
      r.gone.add(seq.id);
      r.queued--;
      const best = leastLoaded(to);
      enqueue(best, seq);
      start(best, time);
    }
  }
  for (const m of new Set(ctx.fresh.map((r) => r.model.id))) {
    if (ctx.config.replan?.overlap === true) bringUp(ctx, m, time);
    else checkDrained(ctx, m, time);
  }
  for (const r of ctx.retiring) if (!r.busy) start(r, time);
}
