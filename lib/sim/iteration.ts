/**
 * One scheduling decision: the replica's local policy sees a snapshot (head of the queue, running
 * sequences, free KV, limits, SLO, latency model), and its drops, admissions, preemptions, prefill
 * chunks and decodes are applied against the KV accounts. Under MuxServe's split the prefill job
 * only prefills and the decode job only decodes; under its ADBS prefills are whole prompts.
 * @module
 */
import type { IterationShape } from '../scheduler/latency-model.js';
import { blocksFor, type ModelSnapshot, type RunningSequence, type WaitingRequest } from '../scheduler/local/types.js';
import { prefillBatch } from './adbs.js';
import { freeBlocks, grow, preemptSeq } from './replica-kv.js';
import { setActive, wake } from './replica-queue.js';
import type { Replica, Seq, SimContext, Work } from './state.js';

/** Retry delay of a replica that could do nothing (short of memory, or its batch cap taken). */
const POLL_MS = 5;

/** Asks the policy what `r` runs next; undefined (and a retry scheduled) when nothing can run. */
export function decideIteration(ctx: SimContext, r: Replica, now: number, waiting: readonly Seq[], byId: ReadonlyMap<number, Seq>): Work | undefined {
  const tpb = r.entry.tokensPerBlock;
  // Split jobs share the engine's batch cap (under ADBS the model's quota): the prefill job admits
  // only what the decode job leaves.
  const maxBatch = r.decodeLane === undefined ? r.maxBatch : Math.max(0, (r.adbs?.maxSeqs ?? r.maxBatch) - r.decodeLane.running.length);
  // Under ADBS (only prefill jobs hold a quota) the policy sees MuxServe's whole-prompt batch and
  // no chunking budget.
  const whole = r.adbs !== undefined;
  const pending = whole ? r.running.reduce((a, s) => a + s.targetTokens - s.computedTokens, 0) : 0;
  const shown = whole ? prefillBatch(waiting, maxBatch - r.running.length, ctx.maxBatchTokens - pending) : waiting;
  const snapshot: ModelSnapshot = {
    nowMs: now,
    waiting: shown as readonly WaitingRequest[],
    running: r.running as readonly RunningSequence[],
    kv: { freeBlocks: freeBlocks(r), tokensPerBlock: tpb },
    limits: { maxBatch, maxBatchTokens: whole ? Infinity : ctx.maxBatchTokens, minBatch: r.minBatch },
    slo: { ttftMs: r.sloMs, ...(r.model.slo?.tpotMs !== undefined && { tpotMs: r.model.slo.tpotMs }) },
    latency: r.latency,
    ttftPerTokenMs: r.ttftPerTokenMs,
  };
  const d = ctx.system.policy(snapshot);
  for (const id of d.drop) {
    const s = byId.get(id);
    if (s === undefined || r.gone.has(id)) continue;
    r.gone.add(id);
    r.queued--;
    ctx.outcomes.get(id)!.state = 'dropped';
  }
  for (const id of d.admit) {
    const s = byId.get(id);
    if (s === undefined || r.gone.has(id)) continue;
    r.gone.add(id);
    r.queued--;
    r.running.push(s);
    ctx.outcomes.get(id)!.state = 'running';
  }
  for (const id of d.preempt) {
    const s = byId.get(id);
    if (s === undefined || s.blocks === 0) continue;
    preemptSeq(r, s);
    ctx.preemptions++;
  }
  if (r.prefillLane !== undefined) {
    // A preempted sequence must be prefilled again: back to the prefill job.
    const back = r.running.filter((x) => x.computedTokens < x.targetTokens);
    if (back.length > 0) {
      r.running = r.running.filter((x) => x.computedTokens >= x.targetTokens);
      r.prefillLane.running.push(...back);
      wake(ctx, r.prefillLane, now);
    }
  }
  const prefill: { seq: Seq; tokens: number }[] = [];
  for (const c of r.prefillLane !== undefined ? [] : d.prefill) {
    const s = byId.get(c.id);
    if (s === undefined || s.computedTokens >= s.targetTokens) continue;
    let tokens = Math.min(c.tokens, s.targetTokens - s.computedTokens);
    if (whole) {
      // All of the prompt in this step, or none of it until its blocks are free.
      tokens = s.targetTokens - s.computedTokens;
      if (!grow(r, s, blocksFor(s.targetTokens, tpb))) continue;
      prefill.push({ seq: s, tokens });
      continue;
    }
    while (tokens > 0 && !grow(r, s, blocksFor(s.computedTokens + tokens, tpb))) tokens = Math.min(tokens - 1, s.blocks * tpb + freeBlocks(r) * tpb - s.computedTokens);
    if (tokens > 0) prefill.push({ seq: s, tokens });
  }
  const decode: Seq[] = [];
  for (const id of r.decodeLane !== undefined ? [] : d.decode) {
    const s = byId.get(id);
    if (s === undefined || s.computedTokens < s.targetTokens || s.blocks === 0) continue;
    if (grow(r, s, blocksFor(s.computedTokens + 1, tpb))) decode.push(s);
    else {
      // The policy promised memory it did not have: evict this one, as vLLM would.
      preemptSeq(r, s);
      ctx.preemptions++;
    }
  }
  if (prefill.length === 0 && decode.length === 0) {
    setActive(r, r.running.length > 0);
    if (r.queued > 0 || r.running.length > 0) wake(ctx, r, now + POLL_MS);
    return undefined;
  }
  const prefillTokens = prefill.reduce((a, p) => a + p.tokens, 0);
  const shape: IterationShape = {
    prefillSeqs: prefill.length,
    prefillTokens,
    decodeSeqs: decode.length,
    decodeContext: decode.length > 0 ? decode.reduce((a, s) => a + s.computedTokens, 0) / decode.length : 0,
  };
  return { prefill, decode, steps: 1, shape, ms: 0 };
}
