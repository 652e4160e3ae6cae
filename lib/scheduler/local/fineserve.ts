/**
 * Our local policy. Where the reference's saab predicts TTFT with one static batch-1 number per
 * token and lets vLLM compose steps FIFO, this one:
 * - predicts with the replica's latency model (batch- and length-dependent, corrected online from
 *   measured iterations, so co-location slowdown is seen);
 * - admits in earliest-deadline order (priority first), a request only if its predicted first
 *   token meets its deadline *and* no admitted sequence that was on time becomes late;
 * - admits only what the KV can hold (whole prompt plus a block of decode headroom per running
 *   sequence), so admission does not cause preemption thrash;
 * - composes steps EDF, with a TPOT guard that shrinks the prefill chunk so a step stays within
 *   the TPOT SLO and stops admitting when the decode batch alone would exceed it;
 * - preempts, when it must, the lowest-priority sequence with the least computed tokens (the
 *   cheapest to recompute), not the last admitted.
 * Requests that cannot meet their deadline even alone are dropped, as the reference does: they
 * count as misses either way, and serving them would make others late.
 * @module
 */
import { iterationMs } from '../latency-model.js';
import { admittedSequence, composeStep } from './engine-step.js';
import { blocksFor, type IterationDecision, type ModelSnapshot, type RunningSequence, type WaitingRequest } from './types.js';

/** Decode growth each engine sequence is assumed to still need, tokens. */
const GROWTH_TOKENS = 256;

/** Tunables of {@link fineserveLocal}. */
export interface FineServeLocalOptions {
  /** The TPOT guard never shrinks a prefill chunk below this; default 64 tokens. */
  readonly minChunkTokens?: number;
  /** Candidates examined per iteration (the rest wait a step); default 64. */
  readonly scanLimit?: number;
}

/** Preemption victim: lowest priority, then fewest computed tokens, then latest arrival. */
export function cheapestVictim(candidates: readonly RunningSequence[]): RunningSequence {
  let best = candidates[0]!;
  for (const c of candidates) {
    if (c.priority < best.priority || (c.priority === best.priority && (c.computedTokens < best.computedTokens || (c.computedTokens === best.computedTokens && c.arrivalMs > best.arrivalMs)))) best = c;
  }
  return best;
}

/** Our policy with default options. */
export function fineserveLocal(s: ModelSnapshot): IterationDecision {
  return fineserveLocalWith({})(s);
}

/** Our policy with explicit options. */
export function fineserveLocalWith(options: FineServeLocalOptions): (s: ModelSnapshot) => IterationDecision {
  const minChunk = options.minChunkTokens ?? 64;
  const scanLimit = options.scanLimit ?? 64;
  return (s) => {
    const decoding = s.running.filter((r) => r.computedTokens >= r.targetTokens);
    const d = decoding.length;
    const ctx = d > 0 ? decoding.reduce((a, r) => a + r.computedTokens, 0) / d : 0;
    const prefilling = s.running.filter((r) => r.computedTokens < r.targetTokens);
    const meanPrompt = Math.max(1, mean([...prefilling.map((r) => r.targetTokens), ...s.waiting.slice(0, 16).map((w) => w.promptTokens)]) || 256);
    const others = s.othersMs ?? 0;
    const chunkMs = (x: number, decodeSeqs: number): number =>
      iterationMs(s.latency, { prefillSeqs: Math.max(1, Math.round(x / meanPrompt)), prefillTokens: x, decodeSeqs, decodeContext: ctx }) + others;

    // TPOT guard: the largest chunk whose step stays within the TPOT SLO, or within the slack
    // the decoding sequences have banked when the driver knows it.
    const unguarded = s.limits.maxBatchTokens;
    let budget = unguarded;
    const tpot = s.slo.tpotMs;
    const limit = s.stepLimitMs ?? tpot;
    if (limit !== undefined && (d > 0 || s.coLocatedDecoding === true) && chunkMs(budget, d) > limit) {
      let lo = Math.min(minChunk, budget);
      let hi = budget;
      while (hi - lo > 16) {
        const mid = Math.floor((lo + hi) / 2);
        if (chunkMs(mid, d) <= limit) lo = mid;
        else hi = mid;
      }
      budget = lo;
    }
    // Time to prefill `tokens` more at the front of the queue, chunk by chunk.
    const timeWith = (chunk: number): ((tokens: number) => number) => {
      const fullChunk = chunkMs(chunk, d);
      return (tokens) => {
        const full = Math.floor(tokens / chunk);
        const rest = tokens - full * chunk;
        return full * fullChunk + (rest > 0 ? chunkMs(rest, d) : 0);
      };
    };
    const timeFor = timeWith(budget);
    const timeAlone = budget === unguarded ? timeFor : timeWith(unguarded);

    // Dropped: what cannot meet its deadline even at the whole token budget. What only the
    // guard makes late waits: the guard loosens as decodes finish or bank slack.
    const drop: number[] = [];
    const survivors: WaitingRequest[] = [];
    for (const w of s.waiting) {
      if (s.nowMs + timeAlone(w.promptTokens) > w.deadlineMs) drop.push(w.id);
      else survivors.push(w);
    }
    survivors.sort(byUrgency);

    // The engine's prefill queue in EDF order, with each entry's predicted finish.
    type Entry = { deadlineMs: number; priority: number; id: number; remaining: number };
    const queue: Entry[] = prefilling
      .map((r) => ({ deadlineMs: r.deadlineMs, priority: r.priority, id: r.id, remaining: r.targetTokens - r.computedTokens }))
      .sort(byUrgency);
    const finishes = (q: readonly Entry[]): number[] => {
      let cum = 0;
      return q.map((e) => s.nowMs + timeFor((cum += e.remaining)));
    };
    let before = finishes(queue);
    let seats = s.limits.maxBatch - s.running.length;
    const reserved = prefilling.reduce((a, r) => a + blocksFor(r.targetTokens, s.kv.tokensPerBlock) - r.blocks, 0);
    // Decode growth headroom: every sequence in the engine may grow by about a mean output
    // (256 tokens) before it finishes; admitting into that space is what makes preemption.
    const growth = blocksFor(GROWTH_TOKENS, s.kv.tokensPerBlock);
    let freeBlocks = s.kv.freeBlocks - reserved - s.running.length * growth;
    let seqs = s.running.length;
    const admit: WaitingRequest[] = [];
    for (const c of survivors.slice(0, scanLimit)) {
      if (seats <= 0) break;
      // The guards never leave a model idle: a first sequence always gets in, so a TPOT SLO
      // the device cannot meet at batch 1 slows nothing down to a halt.
      if (tpot !== undefined && seqs > 0 && s.latency.decodeMs(seqs + 1, ctx) + others > tpot) break;
      const need = blocksFor(c.promptTokens, s.kv.tokensPerBlock);
      if (need + (seqs > 0 ? growth : 1) > freeBlocks) continue;
      const entry: Entry = { deadlineMs: c.deadlineMs, priority: c.priority, id: c.id, remaining: c.promptTokens };
      let at = queue.findIndex((e) => byUrgency(entry, e) < 0);
      if (at < 0) at = queue.length;
      const next = [...queue.slice(0, at), entry, ...queue.slice(at)];
      const after = finishes(next);
      let ok = after[at]! <= c.deadlineMs;
      for (let i = at + 1; ok && i < next.length; i++) {
        const wasOnTime = before[i - 1]! <= next[i]!.deadlineMs;
        if (wasOnTime && after[i]! > next[i]!.deadlineMs) ok = false;
      }
      if (!ok) continue;
      queue.splice(at, 0, entry);
      before = after;
      admit.push(c);
      seats--;
      seqs++;
      freeBlocks -= need + growth;
    }
    const engine = [...s.running, ...admit.map(admittedSequence)];
    const step = composeStep(s, engine, { prefillOrder: 'edf', victim: cheapestVictim, tokenBudget: budget });
    return { admit: admit.map((r) => r.id), drop, ...step };
  };
}

function byUrgency(a: { priority: number; deadlineMs: number; id: number }, b: { priority: number; deadlineMs: number; id: number }): number {
  return b.priority - a.priority || a.deadlineMs - b.deadlineMs || a.id - b.id;
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}
