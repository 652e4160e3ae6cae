/**
 * The serving loop: a discrete-time replay (one step = one decode iteration) in the style of a
 * vLLM engine per model sharing one KV pool. Each step, finished requests free their blocks,
 * running requests get their next block one token ahead (or preempt by recompute when they
 * cannot), and waiting requests are admitted first come first served per model while their prompt
 * fits; one pool.step() call carries the iteration for all models, a second only when something
 * failed and must be retried or undone. With reclaim by compaction (the `kv-slab` run), a model
 * short of blocks first has other models compact their stranded slabs, then retries (compaction.ts).
 * Prefill is instant and every model decodes one token per step: the benchmark isolates memory,
 * so the only thing that differs between runs is the pool policy.
 * @module
 */
import { KvPool, type KvPoolStats } from '../../lib/index.js';
import type { Trace, TraceRequest } from '../kv-trace.js';
import { BlockIndex } from './block-index.js';
import { CompactionLog, reclaim } from './compaction.js';
import { MODELS, type Config } from './config.js';
import { newCounters, Window, type RunResult } from './metrics.js';
import type { RunSpec } from './policies.js';
import { ModelSim, Req } from './sim.js';

type AllocOut = { readonly ok: true; readonly blocks: Uint32Array } | { readonly ok: false };
interface FreeEntry {
  readonly model: number;
  readonly blocks: number[];
}

/** One batch of allocations: growth (hard, then soft) and admissions, in pool.step() order. */
interface Round {
  readonly hard: readonly Req[];
  readonly soft: readonly Req[];
  readonly candidates: readonly Req[];
}

/** What a round's allocations came to. */
interface Settled {
  readonly failedGrowth: Req[];
  readonly failedSoft: Req[];
  readonly admitted: Req[];
  /** Admissions granted out of order (an earlier request of the model failed): to be given back. */
  readonly rollbacks: FreeEntry[];
  readonly anyFailed: boolean;
}

export function replay(spec: RunSpec, trace: Trace, cfg: Config): RunResult {
  const wall0 = performance.now();
  const pool = KvPool.create(spec.options);
  const models = MODELS.map((def, i) => {
    const geometry = spec.geometries[i] ?? def.geometry;
    const partitionBytes = spec.partitions?.[i];
    const id = pool.addModel(partitionBytes === undefined ? { name: def.name, geometry } : { name: def.name, geometry, partitionBytes });
    return { id, geometry, partitionBytes };
  });
  const stats0 = pool.stats();
  const sims = models.map((m, i) => {
    const s = stats0.models.find((x) => x.id === m.id);
    if (s === undefined) throw new Error(`model ${m.id} missing from stats`);
    return new ModelSim(i, m.id, m.geometry.tokensPerBlock, s.blockBytes, s.tokenBytes);
  });
  const simById = new Map(sims.map((s) => [s.id, s]));
  const n = sims.length;
  const dt = cfg.stepSeconds;
  const deadline = Math.round(cfg.deadlineSeconds / dt);
  const warmup = Math.round(cfg.warmupSeconds / dt);
  const stepsPerPhase = Math.round(cfg.phaseSeconds / dt);
  const maxSteps = trace.steps + Math.round(cfg.drainSeconds / dt);

  const counters = newCounters();
  const win = new Window(n);
  const phaseLive = new Array<number>(cfg.phases).fill(0);
  const phaseUtil = new Array<number>(cfg.phases).fill(0);
  const phaseSteps = new Array<number>(cfg.phases).fill(0);
  const nativeNs = new Float64Array(maxSteps);
  // Reclaim by compaction needs to know which table holds each block; the other runs skip it.
  const index = spec.compaction ? new BlockIndex(n) : undefined;
  const clog = spec.compaction ? new CompactionLog(maxSteps, n) : undefined;
  let nativeCalls = 0;
  let peakUtil = 0;
  let running: Req[] = [];
  let pendingFrees: FreeEntry[] = [];
  /** The pool stats measured at the end of the previous step. */
  let telemetry: KvPoolStats = stats0;
  let next = 0;
  let step = 0;

  const timed = <T>(t: number, call: () => T): T => {
    const t0 = process.hrtime.bigint();
    const r = call();
    nativeNs[t] = (nativeNs[t] ?? 0) + Number(process.hrtime.bigint() - t0);
    nativeCalls++;
    return r;
  };
  const liveTokensOf = (plan: (r: Req) => number, extra: readonly Req[] = [], extraPlan: (r: Req) => number = plan) => {
    const tokens = new Array<number>(n).fill(0);
    for (const r of running) if (!r.preempted) tokens[r.m.index] = (tokens[r.m.index] ?? 0) + plan(r);
    for (const r of extra) tokens[r.m.index] = (tokens[r.m.index] ?? 0) + extraPlan(r);
    return sims.map((s, i) => ({ model: s.id, tokens: tokens[i] ?? 0 }));
  };
  const prefill = (r: Req): number => r.t.input + r.generated;
  /** Blocks handed back to the pool leave the index. */
  const unindex = (frees: readonly FreeEntry[]): void => {
    if (index !== undefined) for (const f of frees) index.remove((simById.get(f.model) as ModelSim).index, f.blocks);
  };

  /**
   * Each queue's prefix that fits its budget, interleaved by arrival keeping each model's own
   * order. In a shared pool every model counts the same free memory, so some candidates fail;
   * that model then admits nothing more this round (first come, first served per model).
   */
  const pickCandidates = (budgets: readonly number[]): Req[] => {
    const perModel: Req[][] = sims.map((s) => {
      let budget = budgets[s.index] ?? 0;
      const out: Req[] = [];
      for (const r of s.queue()) {
        const need = r.admitBlocks();
        if (need > budget) break;
        budget -= need;
        out.push(r);
      }
      return out;
    });
    const candidates: Req[] = [];
    const cursor = new Array<number>(n).fill(0);
    for (;;) {
      let best = -1;
      for (let i = 0; i < n; i++) {
        const c = perModel[i]?.[cursor[i] ?? 0];
        const b = best < 0 ? undefined : perModel[best]?.[cursor[best] ?? 0];
        if (c !== undefined && (b === undefined || c.t.arrivalStep < b.t.arrivalStep || (c.t.arrivalStep === b.t.arrivalStep && c.t.id < b.t.id))) best = i;
      }
      if (best < 0) break;
      candidates.push(perModel[best]?.[cursor[best] ?? 0] as Req);
      cursor[best] = (cursor[best] ?? 0) + 1;
    }
    return candidates;
  };

  /** Applies a round's alloc results to the block tables and queues. */
  const settle = (round: Round, allocs: readonly AllocOut[]): Settled => {
    const { hard, soft, candidates } = round;
    let anyFailed = false;
    const failedGrowth: Req[] = [];
    const failedSoft: Req[] = [];
    const grow = (r: Req, a: AllocOut | undefined): boolean => {
      if (!a?.ok) return false;
      const at = r.blocks.length;
      r.blocks.push(...a.blocks);
      index?.add(r.m.index, r, at);
      return true;
    };
    hard.forEach((r, i) => {
      if (!grow(r, allocs[i])) {
        failedGrowth.push(r);
        anyFailed = true;
      }
    });
    // A soft miss costs nothing now; the block becomes a hard need next step.
    soft.forEach((r, i) => {
      if (!grow(r, allocs[hard.length + i])) {
        failedSoft.push(r);
        anyFailed = true;
      }
    });
    // A model that must preempt admits nothing this step (vLLM schedules running requests first).
    const preempting = new Array<boolean>(n).fill(false);
    for (const r of failedGrowth) preempting[r.m.index] = true;
    const blocked = new Array<boolean>(n).fill(false);
    const admittedPerModel = new Array<number>(n).fill(0);
    const admitted: Req[] = [];
    const rollbacks: FreeEntry[] = [];
    candidates.forEach((r, k) => {
      const a = allocs[hard.length + soft.length + k];
      const i = r.m.index;
      if (a?.ok && !blocked[i] && !preempting[i]) {
        r.blocks = Array.from(a.blocks);
        index?.add(i, r);
        admitted.push(r);
        admittedPerModel[i] = (admittedPerModel[i] ?? 0) + 1;
      } else if (a?.ok) {
        // Admitted out of order (an earlier request of its model did not fit): give it back.
        const back = { model: r.m.id, blocks: Array.from(a.blocks) };
        index?.add(i, back);
        rollbacks.push(back);
        counters.rolledBackAdmissions++;
      } else {
        blocked[i] = true;
        anyFailed = true;
      }
    });
    sims.forEach((s) => s.shift(admittedPerModel[s.index] ?? 0));
    return { failedGrowth, failedSoft, admitted, rollbacks, anyFailed };
  };

  /** Blocks per model in a list of frees. */
  const blocksPerModel = (frees: readonly FreeEntry[]): number[] => {
    const out = new Array<number>(n).fill(0);
    for (const f of frees) {
      const i = (simById.get(f.model) as ModelSim).index;
      out[i] = (out[i] ?? 0) + f.blocks.length;
    }
    return out;
  };
  const countPerModel = (reqs: readonly Req[]): number[] => {
    const out = new Array<number>(n).fill(0);
    for (const r of reqs) out[r.m.index] = (out[r.m.index] ?? 0) + 1;
    return out;
  };
  const one = (r: Req) => ({ model: r.m.id, count: 1 });

  for (; step < maxSteps; step++) {
    const arrivalsDone = next >= trace.requests.length;
    if (step >= trace.steps && arrivalsDone && running.length === 0 && pendingFrees.length === 0 && sims.every((s) => s.queued === 0)) break;

    for (; next < trace.requests.length; next++) {
      const t = trace.requests[next] as TraceRequest;
      if (t.arrivalStep > step) break;
      const m = sims[t.model] as ModelSim;
      m.waiting.push(new Req(t, m));
      counters.arrived++;
    }
    for (const m of sims) counters.rejected += m.expire(step, deadline);

    // Growth: a running request must have room for the token it decodes this step (hard: without
    // it the request is preempted) and asks for room for the next one too (soft: a one-token
    // lookahead, like vLLM's lookahead slots, so admissions cannot take the block a running request
    // is about to need; without it admission runs memory to zero and growth preempts every step).
    const hard: Req[] = [];
    const soft: Req[] = [];
    const growth = new Array<number>(n).fill(0);
    for (const r of running) {
      const tpb = r.m.tokensPerBlock;
      const grows = r.stored + 1 > r.blocks.length * tpb;
      const last = r.generated + 1 >= r.t.output;
      if (grows) hard.push(r);
      if (!last && r.stored + 2 > (r.blocks.length + (grows ? 1 : 0)) * tpb) soft.push(r);
      growth[r.m.index] = (growth[r.m.index] ?? 0) + (grows ? 1 : 0) + (soft[soft.length - 1] === r ? 1 : 0);
    }
    // Admission budget: what the model could get before this step, plus the blocks it frees now,
    // less its growth. Blocks other models free reach it next step.
    const freed = blocksPerModel(pendingFrees);
    const available = timed(step, () => sims.map((s) => pool.availableBlocks(s.id)));
    const candidates = pickCandidates(sims.map((s) => (available[s.index] ?? 0) + (freed[s.index] ?? 0) - (growth[s.index] ?? 0)));

    // One native call: frees, growth (hard, then soft), admissions, and the live tokens if every
    // alloc succeeds.
    const frees = pendingFrees;
    pendingFrees = [];
    unindex(frees);
    const result = timed(step, () =>
      pool.step({
        frees,
        allocs: [...hard.map(one), ...soft.map(one), ...candidates.map((r) => ({ model: r.m.id, count: r.admitBlocks() }))],
        liveTokens: liveTokensOf((r) => r.stored + 1, candidates, prefill),
      }),
    );
    let settled = settle({ hard, soft, candidates }, result.allocs as readonly AllocOut[]);
    const admitted: Req[] = [...settled.admitted];

    // Reclaim by compaction: a model still short of blocks (a failed growth, or a queue head that
    // does not fit what the pool could give it) has other models compact their stranded slabs,
    // then the round is retried: the failed growth first, then admissions.
    if (index !== undefined && clog !== undefined && (settled.anyFailed || sims.some((s) => s.queued > 0))) {
      const rolledBack = blocksPerModel(settled.rollbacks);
      const hardShort = countPerModel(settled.failedGrowth);
      const softShort = countPerModel(settled.failedSoft);
      const avail = timed(step, () => sims.map((s) => pool.availableBlocks(s.id) + (rolledBack[s.index] ?? 0)));
      const shortfall = sims.map((s) => {
        const need = (hardShort[s.index] ?? 0) + (softShort[s.index] ?? 0) + (s.first()?.admitBlocks() ?? 0);
        return Math.max(0, need - (avail[s.index] ?? 0));
      });
      const released = reclaim(pool, sims, shortfall, index, cfg.compaction, clog, step, telemetry, (call) => timed(step, call));
      if (released > 0) {
        clog.retryRounds++;
        const retryFrees = settled.rollbacks;
        unindex(retryFrees);
        const after = timed(step, () => sims.map((s) => pool.availableBlocks(s.id)));
        const round: Round = {
          hard: settled.failedGrowth,
          soft: settled.failedSoft,
          candidates: pickCandidates(
            sims.map((s) => (after[s.index] ?? 0) + (rolledBack[s.index] ?? 0) - (hardShort[s.index] ?? 0) - (softShort[s.index] ?? 0)),
          ),
        };
        const retry = timed(step, () =>
          pool.step({
            frees: retryFrees,
            allocs: [...round.hard.map(one), ...round.soft.map(one), ...round.candidates.map((r) => ({ model: r.m.id, count: r.admitBlocks() }))],
            liveTokens: liveTokensOf((r) => r.stored + 1, [...admitted, ...round.candidates], prefill),
          }),
        );
        settled = settle(round, retry.allocs as readonly AllocOut[]);
        clog.retryGrowth += round.hard.length - settled.failedGrowth.length;
        clog.retryAdmitted += settled.admitted.length;
        admitted.push(...settled.admitted);
      }
    }
    const fixFrees: FreeEntry[] = [...settled.rollbacks];

    // Preemption by recompute: each request that could not grow evicts its model's most recently
    // admitted running request (possibly itself), then retries once the victim's blocks are free.
    const retries: Req[] = [];
    for (const g of settled.failedGrowth) {
      if (g.preempted) continue;
      let victim: Req | undefined;
      for (let i = running.length - 1; i >= 0; i--) {
        const r = running[i] as Req;
        if (r.m === g.m && !r.preempted) {
          victim = r;
          break;
        }
      }
      if (victim === undefined) continue;
      victim.preempted = true;
      fixFrees.push({ model: victim.m.id, blocks: victim.blocks });
      counters.preemptions++;
      if (victim.preemptions++ === 0) counters.preemptedRequests++;
      counters.recomputeTokens += victim.t.input + victim.generated;
      victim.blocks = [];
      victim.stored = 0;
      victim.enqueuedStep = step;
      victim.m.resumed.push(victim);
      if (victim !== g) retries.push(g);
    }
    // Requests that could not grow this step; a successful retry takes them off.
    const stalled = new Set<Req>(retries);
    if (settled.anyFailed || fixFrees.length > 0) {
      const plan = (r: Req): number => (stalled.has(r) ? r.stored : r.stored + 1);
      unindex(fixFrees);
      const fix = timed(step, () =>
        pool.step({
          frees: fixFrees,
          allocs: retries.map(one),
          liveTokens: liveTokensOf((r) => r.stored + 1, admitted, prefill),
        }).allocs as readonly AllocOut[],
      );
      retries.forEach((r, i) => {
        const a = fix[i];
        if (a?.ok) {
          const at = r.blocks.length;
          r.blocks.push(...a.blocks);
          index?.add(r.m.index, r, at);
          stalled.delete(r);
        }
      });
      // A failed retry left its model's live tokens capped at what it holds; state them exactly.
      if (stalled.size > 0) timed(step, () => pool.step({ liveTokens: liveTokensOf(plan, admitted, prefill) }));
    }

    // Decode one token per running request; admissions ran their prefill, which yields one token.
    const stillRunning: Req[] = [];
    // Finished requests keep their KV until the next step's frees, which run before any alloc.
    const finished: Req[] = [];
    const finish = (r: Req): void => {
      finished.push(r);
      pendingFrees.push({ model: r.m.id, blocks: r.blocks });
      counters.completed++;
      counters.completedInputTokens += r.t.input;
      counters.completedOutputTokens += r.t.output;
    };
    for (const r of running) {
      if (r.preempted) {
        r.preempted = false;
        continue;
      }
      if (stalled.has(r)) {
        counters.stalledDecodes++;
        stillRunning.push(r);
        continue;
      }
      r.stored++;
      r.generated++;
      if (r.generated >= r.t.output) finish(r);
      else stillRunning.push(r);
    }
    for (const r of admitted) {
      counters.admitted++;
      r.stored = r.t.input + r.generated;
      r.generated++;
      if (step >= warmup && step < trace.steps) win.admittedPromptTokens += r.stored;
      if (r.generated >= r.t.output) finish(r);
      else stillRunning.push(r);
    }
    running = stillRunning;

    // Measure. The pool's own live-token count must equal the replay's: a cross-check that every
    // step stated live tokens exactly (and, with compaction, that the index knows every live block).
    const st: KvPoolStats = pool.stats();
    telemetry = st;
    let liveTokens = 0;
    let liveBytes = 0;
    const modelTokens = new Array<number>(n).fill(0);
    for (const r of [...running, ...finished]) {
      liveTokens += r.stored;
      liveBytes += r.stored * r.m.tokenBytes;
      modelTokens[r.m.index] = (modelTokens[r.m.index] ?? 0) + r.stored;
    }
    if (liveBytes !== st.liveTokenBytes) {
      throw new Error(`${spec.label} step ${step}: replay holds ${liveBytes} live-token bytes, pool says ${st.liveTokenBytes}`);
    }
    if (index !== undefined) {
      for (const ms of st.models) {
        const s = simById.get(ms.id) as ModelSim;
        if (index.size(s.index) !== ms.liveBlocks) {
          throw new Error(`${spec.label} step ${step}: block index holds ${index.size(s.index)} blocks of ${ms.name}, pool says ${ms.liveBlocks}`);
        }
      }
    }
    const util = liveBytes / st.poolBytes;
    peakUtil = Math.max(peakUtil, util);
    if (step >= warmup && step < trace.steps) {
      win.steps++;
      win.liveTokens += liveTokens;
      win.liveBytes += liveBytes;
      win.internal += st.internalBytes;
      win.external += st.externalBytes;
      win.tail += st.tailBytes;
      win.free += st.freeBytes;
      win.unusable += st.unusableBytes;
      for (const ms of st.models) {
        const s = simById.get(ms.id) as ModelSim;
        win.modelHeldBytes[s.index] = (win.modelHeldBytes[s.index] ?? 0) + ms.heldBytes;
        win.modelExternalBytes[s.index] = (win.modelExternalBytes[s.index] ?? 0) + ms.externalBytes;
        if (s.queued === 0) win.externalIdle += ms.externalBytes;
        win.modelLiveTokens[s.index] = (win.modelLiveTokens[s.index] ?? 0) + (modelTokens[s.index] ?? 0);
      }
      // Saturated: some model still has requests waiting that its memory could not take.
      if (sims.some((s) => s.queued > 0)) {
        win.saturatedSteps++;
        win.saturatedUtil += util;
        win.saturatedLiveTokens += liveTokens;
      }
    }
    if (step < trace.steps) {
      const p = Math.floor(step / stepsPerPhase);
      if (p > 0 || step >= warmup) {
        phaseLive[p] = (phaseLive[p] ?? 0) + liveTokens;
        phaseUtil[p] = (phaseUtil[p] ?? 0) + util;
        phaseSteps[p] = (phaseSteps[p] ?? 0) + 1;
      }
    }
  }
  counters.unfinished = running.length + sims.reduce((a, s) => a + s.queued, 0);

  const end = pool.stats();
  const blockOps = end.models.reduce((a, m) => a + m.blocksAllocated + m.blocksFreed, 0);
  return {
    spec,
    models: sims.map((s, i) => ({
      name: MODELS[i]?.name ?? '',
      tokensPerBlock: s.tokensPerBlock,
      blockBytes: s.blockBytes,
      tokenBytes: s.tokenBytes,
      ...(models[i]?.partitionBytes === undefined ? {} : { partitionBytes: models[i]?.partitionBytes ?? 0 }),
    })),
    counters,
    window: win,
    peakUtil,
    poolPeakLiveTokenBytes: end.peakLiveTokenBytes,
    phaseLiveTokens: phaseLive.map((v, p) => v / Math.max(1, phaseSteps[p] ?? 0)),
    phaseUtil: phaseUtil.map((v, p) => v / Math.max(1, phaseSteps[p] ?? 0)),
    stepsRun: step,
    windowSteps: { from: warmup, to: trace.steps },
    nativeNs: nativeNs.subarray(0, step),
    nativeCalls,
    blockOps,
    mapCostNs: end.mapCostNs,
    mapCalls: end.mapCalls,
    ...(clog === undefined ? {} : { compaction: clog }),
    wallMs: performance.now() - wall0,
  };
}
