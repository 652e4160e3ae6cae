/**
 * MuxServe's adaptive batch scheduling (ADBS), as its scheduler runs it
 * (github.com/hao-ai-lab/MuxServe, muxserve/muxsched/scheduler.py, `schedule_approach: adbs`;
 * ICML 2024 §3.3):
 * - **Token-block quotas.** Each model on a device gets a share of the unified KV pool in
 *   proportion to rate × blocks per token (`init_max_num_seqs`), turned into a cap on its
 *   sequences in flight (`max_num_seqs` = quota blocks / blocks of an average request, the
 *   workload's mean prompt + output, floor-divided by the block size as MuxServe does). A model's
 *   prefill job admits nothing while its prefilling plus decoding sequences reach the cap.
 * - **Adaptation** every 8 s (`adapt_max_num_seqs`): a model whose mean decode batch over its last
 *   500 decode steps is under 90 % of its cap gives up (0.95 − use) × cap sequences' blocks; a
 *   model at 90 % or more with 10 % more requests waiting or running than its mean batch takes
 *   min(max(1, 10 % of its mean batch), what waits beyond it) sequences' worth, from the
 *   under-used models in proportion to what each gives up. Each new quota is floored to whole
 *   sequences; the blocks lost to rounding gather in the device's fragment pool (kept across
 *   adaptations), which buys a model one more sequence when its remainder plus the pool passes a
 *   sequence's blocks, and what is left of it goes to the models with the longest waiting queues
 *   (`num_fragment_blocks`).
 * - **Whole-prompt prefill batches** (`schedule_prefill`): a prefill job takes waiting requests in
 *   order while their prompts fit `max_num_batched_tokens` (2048) and the quota has seats, and
 *   prefills each prompt whole in one step (no chunking; a prompt waits until its blocks are free).
 *   MuxServe would stall its queue behind a prompt longer than the budget; here one goes alone.
 * - **Prefill first.** Prefill jobs take the larger MPS share of the SMs and are scheduled before
 *   decode jobs; here a prefill job's step ignores the compute the decode jobs beside it demand
 *   (it keeps contending for bandwidth and with other prefills), while a decode step is slowed by
 *   everything beside it.
 * Quotas are kept per device and a replica spanning several (tensor parallel) takes the tightest.
 * @module
 */
import type { StepDemand } from '../scheduler/interference.js';
import type { Device, Replica, Seq, SimContext } from './state.js';

/** How often MuxServe re-divides the quotas, ms of simulated time. */
export const ADBS_ADAPT_MS = 8_000;
/** Decode steps whose batch sizes make a model's mean batch. */
const HISTORY = 500;
/** MuxServe's mean batch before a model has decoded anything. */
const DEFAULT_BATCH = 30;

/** A model's ADBS state (on its prefill job). */
export interface AdbsQuota {
  /** Sequences it may hold (prefilling plus decoding). */
  maxSeqs: number;
  /** Blocks of an average request. */
  readonly blocksPerSeq: number;
  /** Its quota of blocks on each of its devices. */
  readonly blocks: Map<Device, number>;
  /** Batch sizes of its last decode steps. */
  readonly history: number[];
}

// Each device's blocks lost to rounding quotas to whole sequences (MuxServe's `num_fragment_blocks`).
const fragments = new WeakMap<Device, number>();

/** Sets every prefill job's initial quota: shares of each device's pool by rate × blocks per token. */
export function initQuotas(ctx: SimContext, rates: ReadonlyMap<Replica, number>): void {
  const arrivals = ctx.config.arrivals;
  const meanLen = arrivals.length === 0 ? 416 : arrivals.reduce((a, x) => a + x.promptTokens + x.outputTokens, 0) / arrivals.length;
  const jobs = ctx.replicas.filter((r) => r.decodeLane !== undefined);
  for (const r of jobs) {
    r.adbs = { maxSeqs: 0, blocksPerSeq: Math.max(1, Math.floor(meanLen / r.entry.tokensPerBlock)), blocks: new Map(), history: [] };
  }
  for (const d of ctx.devices.values()) {
    const here = jobs.filter((r) => r.devices.includes(d));
    if (here.length === 0) continue;
    const pool = d.account.available(here[0]!.slots[here[0]!.devices.indexOf(d)]!);
    // One padded block of the unified pool holds tokensPerBlock tokens of any model.
    const weight = (r: Replica): number => (rates.get(r) ?? 0) / r.entry.tokensPerBlock;
    const total = here.reduce((a, r) => a + weight(r), 0);
    // MuxServe keeps only the whole sequences of each share (its quota is max_num_seqs).
    for (const r of here) {
      const q = r.adbs!;
      const share = Math.floor(total > 0 ? (pool * weight(r)) / total : pool / here.length);
      q.blocks.set(d, Math.floor(share / q.blocksPerSeq) * q.blocksPerSeq);
    }
    fragments.set(d, 0);
  }
  for (const r of jobs) r.adbs!.maxSeqs = seqsOf(r.adbs!);
}

/** Records one decode step's batch (`steps` steps of it) for the model's mean batch. */
export function recordDecodeBatch(decodeJob: Replica, batch: number, steps: number): void {
  const q = decodeJob.prefillLane?.adbs;
  if (q === undefined) return;
  for (let i = 0; i < Math.min(steps, HISTORY); i++) q.history.push(batch);
  if (q.history.length > 2 * HISTORY) q.history.splice(0, q.history.length - HISTORY);
}

/** Re-divides each device's quotas by use, as `adapt_max_num_seqs` does. */
export function adaptQuotas(ctx: SimContext): void {
  const jobs = ctx.replicas.filter((r) => r.adbs !== undefined);
  for (const d of ctx.devices.values()) {
    const here = jobs.filter((r) => r.devices.includes(d));
    if (here.length < 2) continue;
    const meanBatch = (r: Replica): number => {
      const h = r.adbs!.history.slice(-HISTORY);
      return h.length === 0 ? DEFAULT_BATCH : h.reduce((a, b) => a + b, 0) / h.length;
    };
    const busy: { r: Replica; use: number }[] = [];
    const spare = new Map<Replica, number>();
    const stolen = new Map<Replica, number>();
    let totalSpare = 0;
    for (const r of here) {
      const q = r.adbs!;
      const use = meanBatch(r) / Math.max(1, q.maxSeqs);
      if (use >= 0.9) {
        busy.push({ r, use });
        continue;
      }
      const give = Math.max(1, Math.floor((0.95 - use) * q.maxSeqs)) * q.blocksPerSeq;
      spare.set(r, give);
      stolen.set(r, 0);
      totalSpare += give;
    }
    busy.sort((a, b) => b.use - a.use);
    for (const { r } of busy) {
      const avg = meanBatch(r);
      const want = r.queued + r.running.length + (r.decodeLane?.running.length ?? 0);
      if (want < avg * 1.1 || totalSpare <= 0) continue;
      const more = Math.min(Math.max(1, Math.floor(0.1 * avg)), Math.floor(want - avg)) * r.adbs!.blocksPerSeq;
      let got = 0;
      for (const [src, give] of spare) {
        const take = Math.min(Math.floor((more * give) / totalSpare), give - stolen.get(src)!);
        stolen.set(src, stolen.get(src)! + take);
        got += take;
      }
      r.adbs!.blocks.set(d, (r.adbs!.blocks.get(d) ?? 0) + got);
    }
    for (const [src, took] of stolen) src.adbs!.blocks.set(d, Math.max(0, (src.adbs!.blocks.get(d) ?? 0) - took));
    // Whole sequences only, under-used models first, then busy ones by use; the remainders pool.
    let frag = fragments.get(d) ?? 0;
    for (const r of [...spare.keys(), ...busy.map((b) => b.r)]) {
      const q = r.adbs!;
      const blocks = q.blocks.get(d) ?? 0;
      let seqs = Math.floor(blocks / q.blocksPerSeq);
      const rest = blocks % q.blocksPerSeq;
      if (rest + frag > q.blocksPerSeq) {
        seqs++;
        frag -= q.blocksPerSeq - rest;
      } else frag += rest;
      q.blocks.set(d, seqs * q.blocksPerSeq);
    }
    // What is left buys sequences for the longest waiting queues first (a stable sort, as Python's).
    for (const r of [...here].sort((a, b) => b.queued - a.queued)) {
      const q = r.adbs!;
      const n = Math.floor(frag / q.blocksPerSeq);
      q.blocks.set(d, (q.blocks.get(d) ?? 0) + n * q.blocksPerSeq);
      frag -= n * q.blocksPerSeq;
    }
    fragments.set(d, frag);
  }
  for (const r of jobs) r.adbs!.maxSeqs = seqsOf(r.adbs!);
}

/**
 * MuxServe's next prefill batch from `waiting` (in order): requests while their prompts fit
 * `budgetTokens` and `seats` last; the first goes even when alone it passes the budget.
 */
export function prefillBatch(waiting: readonly Seq[], seats: number, budgetTokens: number): Seq[] {
  const out: Seq[] = [];
  let tokens = 0;
  for (const s of waiting) {
    const t = s.targetTokens - s.computedTokens;
    if (out.length >= seats || (out.length > 0 && tokens + t > budgetTokens)) break;
    out.push(s);
    tokens += t;
  }
  return out;
}

function seqsOf(q: AdbsQuota): number {
  return Math.max(1, Math.floor(Math.min(...q.blocks.values()) / q.blocksPerSeq));
}

/**
 * The demands a step of `r` contends with on a device: under ADBS a prefill job's step does not
 * yield SMs to decode jobs (it keeps sharing bandwidth with them).
 */
export function contenders(ctx: SimContext, r: Replica, device: Device): StepDemand[] {
  const out: StepDemand[] = [];
  const prefillFirst = ctx.system.adaptiveBatching === true && r.decodeLane !== undefined;
  for (const [i, x] of device.steps) {
    if (i === r.index) continue;
    out.push(prefillFirst && ctx.replicas[i]!.prefillLane !== undefined ? { compute: 0, memory: x.memory } : x);
  }
  return out;
}
