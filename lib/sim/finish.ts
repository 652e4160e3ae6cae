/**
 * The end of an iteration: prefill chunks and decode steps land, first tokens and finishes are
 * recorded, the latency model learns the step's measured time, freed memory wakes the replicas
 * sharing the devices, and the replica starts its next iteration.
 * @module
 */
import { release } from './replica-kv.js';
import type { Replica, Seq, SimContext } from './state.js';
import { start } from './step.js';

/** Completes `r`'s running iteration at `now`. */
export function finishIteration(ctx: SimContext, r: Replica, now: number): void {
  const w = r.work!;
  r.work = undefined;
  r.busy = false;
  for (const d of r.devices) d.steps.delete(r.index);
  r.latency.observe({ ...w.shape, measuredMs: w.ms / w.steps });
  const done: Seq[] = [];
  for (const { seq, tokens } of w.prefill) {
    if (seq.blocks === 0) continue;
    seq.computedTokens += tokens;
    if (seq.computedTokens >= seq.targetTokens && !seq.started) {
      seq.started = true;
      seq.firstTokenMs = now;
      seq.decodedTokens = 1;
      if (seq.decodedTokens >= seq.outputTokens) done.push(seq);
    }
  }
  for (const seq of w.decode) {
    if (seq.blocks === 0 || seq.computedTokens < seq.targetTokens) continue;
    seq.computedTokens += w.steps;
    seq.decodedTokens += w.steps;
    if (seq.decodedTokens >= seq.outputTokens) done.push(seq);
  }
  if (r.decodeLane !== undefined) {
    // Sequences past their first token leave the prefill job for the decode job.
    const ids = new Set(done.map((s) => s.id));
    const moving = r.running.filter((s) => s.started && !ids.has(s.id) && s.computedTokens >= s.targetTokens);
    if (moving.length > 0) {
      const m = new Set(moving.map((s) => s.id));
      r.running = r.running.filter((s) => !m.has(s.id));
      r.decodeLane.running.push(...moving);
      if (!r.decodeLane.busy) start(ctx, r.decodeLane, now);
    }
  }
  if (done.length > 0) {
    const ids = new Set(done.map((s) => s.id));
    r.running = r.running.filter((s) => !ids.has(s.id));
    for (const s of done) {
      release(r, s);
      s.finishMs = now;
      ctx.outcomes.get(s.id)!.state = 'finished';
    }
    // Memory came back: replicas on the same devices that were stuck can try again now.
    for (const other of ctx.replicas) if (other !== r && !other.busy && other.devices.some((d) => r.devices.includes(d))) start(ctx, other, now);
  }
  start(ctx, r, now);
}
