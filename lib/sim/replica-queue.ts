/**
 * A replica's waiting queue and wake-ups: requests are taken lazily (a `gone` set marks the ones
 * admitted, dropped or handed over), a snapshot sees the head of the queue, and a request joins
 * the replica of its model with the least outstanding work.
 * @module
 */
import type { Replica, Seq, SimContext } from './state.js';

/** The head of the queue (at most `window` requests still waiting), compacting what was taken. */
export function waitingWindow(r: Replica, window: number): Seq[] {
  while (r.head < r.queue.length && r.gone.has(r.queue[r.head]!.id)) r.gone.delete(r.queue[r.head++]!.id);
  if (r.head > 4096 && r.head * 2 > r.queue.length) {
    r.queue.splice(0, r.head);
    r.head = 0;
  }
  const out: Seq[] = [];
  for (let i = r.head; i < r.queue.length && out.length < window; i++) if (!r.gone.has(r.queue[i]!.id)) out.push(r.queue[i]!);
  return out;
}

/** The replica with the fewest queued plus running requests (the first on ties). */
export function leastLoaded(list: readonly Replica[]): Replica {
  let best = list[0]!;
  for (const r of list) if (r.queued + r.running.length < best.queued + best.running.length) best = r;
  return best;
}

/** Queues `seq` on `r`. */
export function enqueue(r: Replica, seq: Seq): void {
  r.queue.push(seq);
  r.queued++;
}

/** Schedules one wake-up of `r` at `at` unless one is pending. */
export function wake(ctx: SimContext, r: Replica, at: number): void {
  if (r.wakePending) return;
  r.wakePending = true;
  ctx.heap.push(at, { kind: 'wake', replica: r });
}

/** Marks `r` running a step (or not) on its devices, for the count-based interference rule. */
export function setActive(r: Replica, on: boolean): void {
  if (r.active === on) return;
  r.active = on;
  for (const d of r.devices) d.active += on ? 1 : -1;
}
