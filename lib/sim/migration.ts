/**
 * Online re-placement in a run: at the re-plan event the moved replicas stop taking requests and
 * hand their not-yet-started ones to the new plan's replicas; once every old replica of a model
 * has drained, its new replicas load weights (bytes per device / host-to-device bandwidth) and
 * then start; with `overlap` they load at once while the old ones drain (make-before-break).
 *
 * Memory holds both copies while both are resident: a device's KV is what the first plan leaves
 * it, less the weights (and activation reserve) of new replicas loading onto it, plus those of
 * moved-away replicas that have drained off it. What that leaves below the account's pool is
 * withheld from the pool; a load that would need memory the KV holds waits (retried every
 * {@link LOAD_RETRY_MS}) until sequences finish or old replicas drain. Static partitions are
 * never shrunk: each engine owns its partition from start to exit, so a new replica loads only
 * when its weights and its partition fit beside the live partitions, and a drained old replica
 * frees its partition with its weights. The reference's per-layer-count pools give the weights
 * free slabs in proportion to their sizes (lib/sim/kv/reference-slab.ts).
 * @module
 */
import { enqueue, leastLoaded, waitingWindow } from './replica-queue.js';
import type { Device, Replica, SimContext } from './state.js';

/** Retry period of a weights load that found its devices' memory taken by KV, ms. */
export const LOAD_RETRY_MS = 50;

const holds = (r: Replica | undefined): boolean => r !== undefined && (r.queued > 0 || r.running.length > 0 || r.busy);
// Under the prefill/decode split a replica has drained when both of its jobs have.
const draining = (r: Replica): boolean => holds(r) || holds(r.decodeLane);
const residentBytes = (r: Replica): number => (r.entry.weightBytes + r.entry.activationBytes) / r.entry.tp;

/** Withholds from `d`'s pool what the weights resident now leave short; false if the KV holds it. */
function settle(d: Device): boolean {
  const kvNow = d.kvPlanned - d.weightsIn + d.weightsOut;
  return d.account.withhold?.(Math.max(0, d.kvPool - kvNow)) ?? true;
}

/** Frees a model's moved-away weights once its old replicas hold nothing; then starts its new ones. */
export function checkDrained(ctx: SimContext, model: string, now: number): void {
  const old = ctx.retiring.filter((r) => r.model.id === model);
  if (old.some(draining)) return;
  if (!ctx.drainedModels.has(model)) {
    ctx.drainedModels.add(model);
    for (const r of old) {
      r.devices.forEach((d, i) => {
        d.weightsOut += residentBytes(r);
        d.account.retire?.(r.slots[i]!);
        settle(d);
      });
    }
  }
  if (!ctx.readyModels.has(model)) bringUp(ctx, model, now);
}

/** Starts loading `model`'s new replicas if their devices have the memory, else retries later. */
export function bringUp(ctx: SimContext, model: string, now: number): void {
  if (ctx.readyModels.has(model)) return;
  const fresh = ctx.fresh.filter((r) => r.model.id === model);
  // Each device's slots of the new replicas (static pools give them their partitions now).
  const touched = new Map<Device, number[]>();
  for (const r of fresh) {
    r.devices.forEach((d, i) => {
      d.weightsIn += residentBytes(r);
      touched.set(d, [...(touched.get(d) ?? []), r.slots[i]!]);
    });
  }
  // Once nothing anywhere is left to drain the plans' own sums hold; start whatever the rounding says.
  const last = ctx.retiring.every((r) => !draining(r));
  const fits = [...touched.keys()].every(settle) && [...touched].every(([d, slots]) => d.account.canOpen?.(slots) ?? true);
  if (!fits && !last) {
    for (const r of fresh) for (const d of r.devices) d.weightsIn -= residentBytes(r);
    for (const d of touched.keys()) settle(d);
    ctx.heap.push(now + LOAD_RETRY_MS, { kind: 'load', model });
    return;
  }
  for (const [d, slots] of touched) d.account.open?.(slots);
  ctx.readyModels.add(model);
  for (const r of fresh) {
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
