/**
 * A replica's KV over its tensor-parallel group: every device of the group holds the same blocks
 * for a sequence, so a grow succeeds on all of them or on none.
 * @module
 */
import type { Replica, Seq } from './state.js';

/** Blocks the replica could still take: the tightest device of its group. */
export function freeBlocks(r: Replica): number {
  return Math.min(...r.devices.map((d, i) => d.account.available(r.slots[i]!)));
}

/** Grows `s` to `blocks` on every device of the group, or does nothing and returns false. */
export function grow(r: Replica, s: Seq, blocks: number): boolean {
  if (blocks <= s.blocks) return true;
  // All or nothing over the TP group: check every device first.
  for (let i = 0; i < r.devices.length; i++) if (r.devices[i]!.account.available(r.slots[i]!) < blocks - s.blocks) return false;
  for (let i = 0; i < r.devices.length; i++) r.devices[i]!.account.grow(r.slots[i]!, s.id, blocks);
  s.blocks = blocks;
  return true;
}

/** Frees every block of `s`. */
export function release(r: Replica, s: Seq): void {
  for (let i = 0; i < r.devices.length; i++) r.devices[i]!.account.release(r.slots[i]!, s.id);
  s.blocks = 0;
}

/** Frees `s` and rewinds it to be prefilled again (vLLM's preemption by recompute). */
export function preemptSeq(r: Replica, s: Seq): void {
  release(r, s);
  s.targetTokens = s.started ? s.promptTokens + s.decodedTokens - 1 : s.promptTokens;
  s.computedTokens = 0;
}
