/**
 * First come, first served (the reference's `fcfs`, used with static partitions: vanilla vLLM).
 * Nothing is dropped; requests enter the engine in arrival order while it has seats.
 * @module
 */
import { admittedSequence, composeStep, lastAdmitted } from './engine-step.js';
import type { IterationDecision, ModelSnapshot } from './types.js';

/** FCFS dispatch up to the batch limit; vLLM composes the step. */
export function fcfs(s: ModelSnapshot): IterationDecision {
  const seats = Math.max(0, s.limits.maxBatch - s.running.length);
  const admit = s.waiting.slice(0, seats);
  const engine = [...s.running, ...admit.map(admittedSequence)];
  const step = composeStep(s, engine, { prefillOrder: 'fifo', victim: lastAdmitted, tokenBudget: s.limits.maxBatchTokens });
  return { admit: admit.map((r) => r.id), drop: [], ...step };
}
