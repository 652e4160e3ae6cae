/**
 * The reference FineServe local policy, "SLO-Aware Adaptive Batching" (`saab`), exactly as notes
 * §4.3 describe its code, and its Prism variant. Both predict TTFT with one static number (the
 * batch-1 profiled prefill time per prompt token) and leave step composition to vLLM.
 * @module
 */
import { admittedSequence, composeStep, lastAdmitted } from './engine-step.js';
import type { IterationDecision, ModelSnapshot, WaitingRequest } from './types.js';

/** More than this many requests already in prefill and saab dispatches nothing (`num_enqueued_seqs_threshold`). */
export const SAAB_PREFILL_THRESHOLD = 3;

/** The reference policy: drop hopeless requests, shrink to a feasible set by removing the longest prompt, dispatch in queue order. */
export function saab(s: ModelSnapshot): IterationDecision {
  return referenceDispatch(s, 'longest-first');
}

/** The reference's Prism local policy: saab with the feasible set built by cumulative sums in queue order. */
export function prismLocal(s: ModelSnapshot): IterationDecision {
  return referenceDispatch(s, 'queue-cumsum');
}

function referenceDispatch(s: ModelSnapshot, shrink: 'longest-first' | 'queue-cumsum'): IterationDecision {
  const admit: WaitingRequest[] = [];
  const drop: number[] = [];
  const inPrefill = s.running.filter((r) => r.computedTokens < r.targetTokens);
  const current = inPrefill.reduce((a, r) => a + r.promptTokens, 0) + (s.running.length - inPrefill.length);
  const skip =
    s.waiting.length === 0 ||
    s.running.length > s.limits.maxBatch ||
    current > s.limits.maxBatchTokens ||
    inPrefill.length > SAAB_PREFILL_THRESHOLD;
  if (!skip) {
    const tpt = s.ttftPerTokenMs;
    const survivors: WaitingRequest[] = [];
    for (const r of s.waiting) {
      if (s.nowMs + tpt * (current + r.promptTokens) > r.deadlineMs) drop.push(r.id);
      else survivors.push(r);
    }
    const feasible = shrink === 'longest-first' ? shrinkLongestFirst(s.nowMs, tpt, current, survivors) : shrinkCumulative(s.nowMs, tpt, current, survivors);
    const seatsLeft = s.limits.maxBatch - s.running.length;
    let tokens = current;
    for (const r of feasible) {
      if (seatsLeft <= 0) break;
      admit.push(r);
      tokens += r.promptTokens;
      // The reference checks after appending, so the last one may overshoot by one request.
      if (admit.length >= seatsLeft || tokens > s.limits.maxBatchTokens) break;
    }
  }
  const engine = [...s.running, ...admit.map(admittedSequence)];
  const step = composeStep(s, engine, { prefillOrder: 'fifo', victim: lastAdmitted, tokenBudget: s.limits.maxBatchTokens });
  return { admit: admit.map((r) => r.id), drop, ...step };
}

// While the whole set's predicted finish misses any member's deadline, leave out the longest
// prompt (it stays queued). Returns the rest in queue order.
function shrinkLongestFirst(now: number, tpt: number, current: number, survivors: readonly WaitingRequest[]): WaitingRequest[] {
  const byLength = [...survivors].sort((a, b) => b.promptTokens - a.promptTokens || b.arrivalMs - a.arrivalMs);
  const byDeadline = [...survivors].sort((a, b) => a.deadlineMs - b.deadlineMs);
  const removed = new Set<number>();
  let total = survivors.reduce((a, r) => a + r.promptTokens, 0);
  let li = 0;
  let di = 0;
  while (removed.size < survivors.length) {
    while (removed.has(byDeadline[di]!.id)) di++;
    if (now + tpt * (current + total) <= byDeadline[di]!.deadlineMs) break;
    const longest = byLength[li++]!;
    removed.add(longest.id);
    total -= longest.promptTokens;
  }
  return survivors.filter((r) => !removed.has(r.id));
}

function shrinkCumulative(now: number, tpt: number, current: number, survivors: readonly WaitingRequest[]): WaitingRequest[] {
  const out: WaitingRequest[] = [];
  let sum = current;
  for (const r of survivors) {
    if (now + tpt * (sum + r.promptTokens) <= r.deadlineMs) {
      out.push(r);
      sum += r.promptTokens;
    }
  }
  return out;
}
