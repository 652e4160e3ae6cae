/**
 * Decode-only stretches as one event: with nothing queued and every sequence decoding, several
 * identical decode steps run at once, up to the next arrival of the model, the first finish, or
 * what the free blocks allow. Exact for token counts; keeps large scenarios fast.
 * @module
 */
import { iterationMs, type IterationShape } from '../scheduler/latency-model.js';
import { blocksFor } from '../scheduler/local/types.js';
import { freeBlocks, grow } from './replica-kv.js';
import type { Replica, SimContext, Work } from './state.js';

/** Several decode steps of `r` as one iteration, or undefined when fewer than two fit. */
export function fastForward(ctx: SimContext, r: Replica, now: number): Work | undefined {
  const tpb = r.entry.tokensPerBlock;
  let steps = ctx.maxFF;
  for (const s of r.running) steps = Math.min(steps, s.outputTokens - s.decodedTokens);
  const ctxTokens = r.running.reduce((a, s) => a + s.computedTokens, 0) / r.running.length;
  const shape: IterationShape = { prefillSeqs: 0, prefillTokens: 0, decodeSeqs: r.running.length, decodeContext: ctxTokens + steps / 2 };
  const stepMs = iterationMs(r.entry.stepLatency, shape) * ctx.costModel.colocationSlowdown(Math.max(...r.devices.map((d) => d.active), 1), 0);
  const next = ctx.nextArrivalOf(r.model.id, now);
  steps = Math.min(steps, Math.max(1, Math.floor((next - now) / stepMs)));
  if (steps <= 1) return undefined;
  const extra = r.running.reduce((a, s) => a + blocksFor(s.computedTokens + steps, tpb) - s.blocks, 0);
  if (extra > freeBlocks(r)) return undefined;
  for (const s of r.running) grow(r, s, blocksFor(s.computedTokens + steps, tpb));
  return { prefill: [], decode: [...r.running], steps, shape, ms: 0 };
}
