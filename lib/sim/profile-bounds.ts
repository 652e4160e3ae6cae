/**
 * What the profiles cover: whether an iteration is timed by extrapolation, and the reference's
 * static batch-1 prefill cost per token that its policies plan with.
 * @module
 */
import { profileModelName } from '../scheduler/catalog.js';
import type { CostEntry, CostModel } from '../scheduler/cost-model.js';
import type { IterationShape, ProfileLatencyModel } from '../scheduler/latency-model.js';

/** Whether an iteration's shape lies outside the profiled grid of `m` (see SimResult.extrapolatedShare). */
export function outsideProfile(m: ProfileLatencyModel, s: IterationShape): boolean {
  const maxBatch = m.batches.at(-1) ?? Infinity;
  const maxLen = m.lengths.at(-1) ?? Infinity;
  const maxCtx = m.contexts.at(-1) ?? Infinity;
  if (s.prefillSeqs > maxBatch || s.decodeSeqs > maxBatch) return true;
  if (s.prefillSeqs > 0 && s.prefillTokens / s.prefillSeqs > maxLen) return true;
  return s.decodeSeqs > 0 && s.decodeContext > maxCtx;
}

/** The reference's static figure: batch-1 profiled prefill ms per prompt token, averaged over lengths. */
export function ttftPerTokenMs(costModel: CostModel, entry: CostEntry): number {
  const name = profileModelName(entry.family, entry.precision.qformat);
  const rows = costModel.rows.filter((r) => r.model === name && r.qformat === entry.precision.qformat && r.tp === entry.tp && r.mpsPercentage === 100 && r.batchSize === 1);
  if (rows.length === 0) return entry.latency.prefillMs(1, 512) / 512;
  return (rows.reduce((a, r) => a + r.prefillTime / r.inputLen, 0) / rows.length) * 1000;
}
