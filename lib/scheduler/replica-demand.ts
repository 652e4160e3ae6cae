/**
 * What a replica asks of each device it runs on, as the work-based interference model sees it
 * (lib/scheduler/interference.ts): its prefill job and its decode job each busy some share of the
 * time, and while busy each demands a share of the device's compute (FLOPs against the peak of its
 * math format) and of its HBM bandwidth. Summed over the replicas of a device, the tighter of the
 * two resources, or the busiest prefill job (a job cannot run faster than alone), is the device's
 * load: a compute-bound prefill-heavy model (FP8, QoQ) beside a memory-bound decode-heavy one
 * (AWQ) loads it less than two of either. This is the paper's precision-aware co-location made
 * a number the planner can compare.
 * @module
 */
import type { CostEntry, CostModel } from './cost-model.js';
import { PLAN_INPUT_TOKENS, PLAN_OUTPUT_TOKENS } from './demand.js';

/** Average demand of one replica on each device of its group, as shares of the device. */
export interface ReplicaDemand {
  /** Mean share of the device's compute over time. */
  readonly compute: number;
  /** Mean share of the device's HBM bandwidth over time. */
  readonly memory: number;
  /**
   * Share of time its prefill job runs: past 1 it cannot keep up whatever runs beside it. (Its
   * decode job is busy whenever a sequence decodes; that limit shows as a larger batch, not here.)
   */
  readonly busy: number;
}

/**
 * The replica's demand at `rate` requests/s with prompts of `input` and outputs of `output`
 * tokens (the planner's lengths by default). Prefill runs batch-1 prompts (compute bound: batching
 * barely shortens them); decode runs the batch Little's law gives (rate × output × TPOT), so its
 * busy share is 1 once a sequence is always decoding.
 */
export function replicaDemand(costModel: CostModel, entry: CostEntry, rate: number, input = PLAN_INPUT_TOKENS, output = PLAN_OUTPUT_TOKENS): ReplicaDemand {
  const m = entry.latency;
  const prefillShape = { prefillSeqs: 1, prefillTokens: input, decodeSeqs: 0, decodeContext: 0 };
  const prefillMs = m.prefillMs(1, input);
  const prefillBusy = (rate * prefillMs) / 1000;
  const prefill = costModel.stepDemand(entry, prefillShape, prefillMs);
  const context = input + output / 2;
  let batch = 1;
  for (let i = 0; i < 8; i++) batch = Math.max(1, (rate * output * m.decodeMs(batch, context)) / 1000);
  const decodeMs = m.decodeMs(batch, context);
  const decodeBusy = Math.min(1, (rate * output * decodeMs) / 1000 / batch);
  const decode = costModel.stepDemand(entry, { prefillSeqs: 0, prefillTokens: 0, decodeSeqs: Math.round(batch), decodeContext: context }, decodeMs);
  return {
    compute: prefillBusy * prefill.compute + decodeBusy * decode.compute,
    memory: prefillBusy * prefill.memory + decodeBusy * decode.memory,
    busy: prefillBusy,
  };
}

/** A device's load from its replicas' demands: its tighter resource, or its busiest prefill job. */
export function deviceLoad(demands: readonly ReplicaDemand[]): number {
  let compute = 0;
  let memory = 0;
  let busy = 0;
  for (const d of demands) {
    compute += d.compute;
    memory += d.memory;
    busy = Math.max(busy, d.busy);
  }
  return Math.max(compute, memory, busy);
}
