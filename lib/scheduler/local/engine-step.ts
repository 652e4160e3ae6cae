/**
 * Composing one engine iteration from the sequences in the engine, as vLLM's V1 scheduler does
 * with chunked prefill: every decoding sequence gets one token, then prefills fill the token
 * budget; a decode that finds no free block preempts a victim by recompute. The reference's
 * policies only choose what enters the engine and leave this to vLLM; ours changes the prefill
 * order, the victim and the budget through {@link StepOptions}.
 * @module
 */
import { blocksFor, type IterationDecision, type ModelSnapshot, type PrefillChunk, type RunningSequence } from './types.js';

/** How the engine composes a step. */
export interface StepOptions {
  /** Prefill order: engine (admission) order as vLLM, or earliest deadline first. */
  readonly prefillOrder: 'fifo' | 'edf';
  /** Picks the preemption victim among sequences holding blocks; vLLM takes the last admitted. */
  readonly victim: (candidates: readonly RunningSequence[]) => RunningSequence;
  /** Token budget of this iteration. */
  readonly tokenBudget: number;
}

/** vLLM's victim: the most recently admitted sequence. */
export function lastAdmitted(candidates: readonly RunningSequence[]): RunningSequence {
  return candidates.at(-1)!;
}

/** A fresh engine sequence for a request admitted this iteration. */
export function admittedSequence(w: { id: number; arrivalMs: number; deadlineMs: number; priority: number; promptTokens: number }): RunningSequence {
  return { ...w, decodedTokens: 0, computedTokens: 0, targetTokens: w.promptTokens, blocks: 0, started: false };
}

/**
 * Composes the iteration over `running` (the snapshot's engine sequences plus those admitted now,
 * in that order). Returns the preemptions, prefill chunks and decodes; admission is the caller's.
 */
export function composeStep(s: ModelSnapshot, running: readonly RunningSequence[], opts: StepOptions): Pick<IterationDecision, 'preempt' | 'prefill' | 'decode'> {
  const tpb = s.kv.tokensPerBlock;
  let free = s.kv.freeBlocks;
  let budget = opts.tokenBudget;
  const preempted = new Set<number>();
  const decode: number[] = [];
  const decodeSet = new Set<number>();
  const prefill: PrefillChunk[] = [];
  const holding = (): RunningSequence[] => running.filter((r) => r.blocks > 0 && !preempted.has(r.id));
  for (const r of running) {
    if (r.computedTokens < r.targetTokens || preempted.has(r.id) || budget <= 0) continue;
    const need = blocksFor(r.computedTokens + 1, tpb) - r.blocks;
    while (need > free && !preempted.has(r.id)) {
      const candidates = holding();
      const victim = candidates.length > 0 ? opts.victim(candidates) : r;
      preempted.add(victim.id);
      free += victim.blocks;
      if (decodeSet.delete(victim.id)) {
        decode.splice(decode.indexOf(victim.id), 1);
        free += blocksFor(victim.computedTokens + 1, tpb) - victim.blocks;
        budget += 1;
      }
    }
    if (preempted.has(r.id)) continue;
    free -= need;
    budget -= 1;
    decode.push(r.id);
    decodeSet.add(r.id);
  }
  const prefilling = running.filter((r) => r.computedTokens < r.targetTokens && !preempted.has(r.id));
  if (opts.prefillOrder === 'edf') prefilling.sort((a, b) => b.priority - a.priority || a.deadlineMs - b.deadlineMs || a.id - b.id);
  for (const r of prefilling) {
    if (budget <= 0) break;
    // vLLM V1 starts no new request in a step that had to preempt: memory is short.
    if (preempted.size > 0 && r.computedTokens === 0) continue;
    let tokens = Math.min(budget, r.targetTokens - r.computedTokens);
    const fits = (r.blocks + free) * tpb - r.computedTokens;
    tokens = Math.min(tokens, fits);
    if (tokens <= 0) continue;
    free -= blocksFor(r.computedTokens + tokens, tpb) - r.blocks;
    budget -= tokens;
    prefill.push({ id: r.id, tokens });
  }
  return { preempt: [...preempted], prefill, decode };
}
