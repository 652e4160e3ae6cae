// MuxServe's adaptive batch scheduling in the simulator (lib/sim/adbs.ts): initial token-block
// quotas by rate x blocks per token, MuxServe's adaptation rule computed by hand, the quota as
// the cap on a model's sequences in flight, and prefill jobs first on the SMs.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { planMuxServe } from '../lib/scheduler/baselines/muxserve.js';
import { CostModel } from '../lib/scheduler/cost-model.js';
import { fcfs } from '../lib/scheduler/local/fcfs.js';
import type { ModelSnapshot } from '../lib/scheduler/local/types.js';
import type { ModelSpec } from '../lib/scheduler/types.js';
import { adaptQuotas, ADBS_ADAPT_MS, contenders, prefillBatch } from '../lib/sim/adbs.js';
import { decideIteration } from '../lib/sim/iteration.js';
import type { Seq } from '../lib/sim/state.js';
import { setUp } from '../lib/sim/setup.js';
import { simulate, type SimConfig } from '../lib/sim/simulator.js';
import { buildSystem } from '../lib/sim/systems.js';
import { generateWorkload } from '../lib/sim/workload.js';

const costModel = CostModel.reference();
const devices = [{ id: 'g0', memoryBytes: 40e9 }];
const models: ModelSpec[] = [
  { id: 'hot', family: 'llama-3.1-8b', precision: 'fp16', rate: 24 },
  { id: 'cold', family: 'llama-3.1-8b', precision: 'w4a16', rate: 8 },
];
const arrivals = generateWorkload({ models: models.map((m) => m.id), rates: { hot: 24, cold: 8 }, durationMs: 20_000, seed: 7 });
const input = { models, devices, sloScale: 40 };
const muxserve = buildSystem('muxserve', costModel, input);
const config: SimConfig = { costModel, models, devices, system: muxserve, arrivals, drainMs: 20_000 };
const meanLen = arrivals.reduce((a, x) => a + x.promptTokens + x.outputTokens, 0) / arrivals.length;

test('MuxServe runs with adaptive batch scheduling; the quotas start as shares of the pool by rate x blocks per token', () => {
  assert.equal(muxserve.adaptiveBatching, true);
  assert.equal(muxserve.splitPrefillDecode, true);
  const ctx = setUp(config);
  const jobs = ctx.replicas.filter((r) => r.adbs !== undefined);
  assert.equal(jobs.length, 2, 'one quota per model, on its prefill job');
  const d = ctx.devices.get('g0')!;
  const pool = d.account.available(0);
  const rate = new Map(muxserve.plan.placements.map((p) => [p.model, p.rate]));
  const w = (r: (typeof jobs)[number]) => rate.get(r.model.id)! / r.entry.tokensPerBlock;
  const total = jobs.reduce((a, r) => a + w(r), 0);
  for (const r of jobs) {
    const perSeq = Math.max(1, Math.floor(meanLen / r.entry.tokensPerBlock));
    // MuxServe keeps whole sequences of the share (its quota is max_num_seqs).
    const blocks = Math.floor(Math.floor((pool * w(r)) / total) / perSeq) * perSeq;
    assert.equal(r.adbs!.blocks.get(d), blocks, r.model.id);
    assert.equal(r.adbs!.blocksPerSeq, perSeq);
    assert.equal(r.adbs!.maxSeqs, Math.max(1, Math.floor(blocks / perSeq)));
  }
  const [a, b] = jobs;
  assert.ok(Math.abs(a!.adbs!.blocks.get(d)! / b!.adbs!.blocks.get(d)! - w(a!) / w(b!)) < 0.02, 'quotas in proportion to rate x blocks per token');
});

test("adaptation moves a busy model's extra sequences' blocks from an under-used one, by MuxServe's rule", () => {
  const ctx = setUp(config);
  const [hot, cold] = ['hot', 'cold'].map((id) => ctx.replicas.find((r) => r.adbs !== undefined && r.model.id === id)!);
  const d = ctx.devices.get('g0')!;
  const h = hot!.adbs!;
  const c = cold!.adbs!;
  const [hotBlocks, coldBlocks, hMax, cMax] = [h.blocks.get(d)!, c.blocks.get(d)!, h.maxSeqs, c.maxSeqs];
  // Hot decodes at its cap (use 1 >= 0.9) with twice its cap waiting; cold at 10 % of its cap.
  const coldBatch = Math.max(1, Math.floor(0.1 * cMax));
  h.history.push(...Array<number>(500).fill(hMax));
  c.history.push(...Array<number>(500).fill(coldBatch));
  hot!.queued = 2 * hMax;
  adaptQuotas(ctx);
  const use = coldBatch / cMax;
  // MuxServe: cold gives max(1, (0.95 - use) x cap) sequences' blocks; hot asks for
  // min(max(1, 0.1 x mean batch), waiting + running - mean batch) sequences' blocks, taken from
  // the givers in proportion (one giver: all of it, up to what it gives).
  const gives = Math.max(1, Math.floor((0.95 - use) * cMax)) * c.blocksPerSeq;
  const asks = Math.min(Math.max(1, Math.floor(0.1 * hMax)), Math.floor(2 * hMax - hMax)) * h.blocksPerSeq;
  const moved = Math.min(asks, gives);
  assert.ok(moved > 0);
  assert.equal(h.blocks.get(d), hotBlocks + moved);
  assert.equal(c.blocks.get(d), coldBlocks - moved);
  assert.equal(h.maxSeqs, Math.floor((hotBlocks + moved) / h.blocksPerSeq));
  assert.ok(h.maxSeqs > hMax && c.maxSeqs < cMax, `hot ${hMax} -> ${h.maxSeqs}, cold ${cMax} -> ${c.maxSeqs}`);
  // A busy model with nothing waiting beyond its mean batch takes nothing.
  const ctx2 = setUp(config);
  const hot2 = ctx2.replicas.find((r) => r.adbs !== undefined && r.model.id === 'hot')!;
  const cold2 = ctx2.replicas.find((r) => r.adbs !== undefined && r.model.id === 'cold')!;
  hot2.adbs!.history.push(...Array<number>(500).fill(hot2.adbs!.maxSeqs));
  cold2.adbs!.history.push(...Array<number>(500).fill(1));
  const before = hot2.adbs!.blocks.get(ctx2.devices.get('g0')!);
  adaptQuotas(ctx2);
  assert.equal(hot2.adbs!.blocks.get(ctx2.devices.get('g0')!), before);
});

test("a model's sequences in flight never pass its quota, and the quota changes the run", () => {
  let over = 0;
  let seen = 0;
  let widest = 0;
  const watching = (s: ModelSnapshot) => {
    const d = fcfs(s);
    // Prefill jobs hold the queue; decode jobs see no waiting requests.
    if (s.nowMs < ADBS_ADAPT_MS && s.waiting.length > 0) widest = Math.max(widest, s.limits.maxBatch);
    // The prefill job's cap is the quota less what its decode job holds.
    if (s.running.length + d.admit.length > Math.max(s.limits.maxBatch, s.running.length)) over++;
    seen++;
    return d;
  };
  const tiny = { ...muxserve, policy: watching };
  const r = simulate({ ...config, system: tiny });
  assert.ok(seen > 100);
  assert.equal(over, 0);
  assert.equal(r.finished + r.dropped + r.inFlight, arrivals.length);
  const plain = simulate({ ...config, system: { ...muxserve, adaptiveBatching: false } });
  assert.notDeepEqual(r.outcomes, plain.outcomes, 'ADBS changes what runs when');
  // Before the first adaptation the cap a prefill job sees is at most its model's initial quota,
  // not vLLM's 256.
  const ctx = setUp(config);
  const quota = Math.max(...ctx.replicas.filter((x) => x.adbs !== undefined).map((x) => x.adbs!.maxSeqs));
  assert.ok(quota < 256 && widest > 0 && widest <= quota, `widest cap ${widest}, largest quota ${quota}`);
  assert.throws(() => setUp({ ...config, system: { ...muxserve, splitPrefillDecode: false } }), /splitPrefillDecode/);
});

test('prefill jobs first: a prefill step does not yield compute to decode jobs beside it, a decode step does', () => {
  const two = planMuxServe(costModel, input);
  const ctx = setUp({ ...config, system: { ...muxserve, plan: two } });
  const d = ctx.devices.get('g0')!;
  const [hotPrefill, coldPrefill] = ['hot', 'cold'].map((id) => ctx.replicas.find((r) => r.adbs !== undefined && r.model.id === id)!);
  d.steps.set(coldPrefill!.decodeLane!.index, { compute: 0.3, memory: 0.8 });
  d.steps.set(coldPrefill!.index, { compute: 0.7, memory: 0.1 });
  const forPrefill = contenders(ctx, hotPrefill!, d);
  assert.deepEqual(forPrefill.sort((a, b) => a.compute - b.compute), [{ compute: 0, memory: 0.8 }, { compute: 0.7, memory: 0.1 }]);
  const forDecode = contenders(ctx, hotPrefill!.decodeLane!, d);
  assert.deepEqual(forDecode.sort((a, b) => a.compute - b.compute), [{ compute: 0.3, memory: 0.8 }, { compute: 0.7, memory: 0.1 }]);
  const plainCtx = setUp({ ...config, system: { ...muxserve, adaptiveBatching: false } });
  const pd = plainCtx.devices.get('g0')!;
  const hp = plainCtx.replicas.find((r) => r.decodeLane !== undefined && r.model.id === 'hot')!;
  const cp = plainCtx.replicas.find((r) => r.decodeLane !== undefined && r.model.id === 'cold')!;
  pd.steps.set(cp.decodeLane!.index, { compute: 0.3, memory: 0.8 });
  assert.deepEqual(contenders(plainCtx, hp, pd), [{ compute: 0.3, memory: 0.8 }], 'without ADBS every step contends alike');
});

// MuxServe's adapt_max_num_seqs (muxserve/muxsched/scheduler.py) transliterated over plain numbers,
// the fragment pool carried between calls: the oracle for the rounding remainder.
interface MuxModel { maxBs: number; bps: number; hist: number[]; waiting: number; running: number }
function muxAdapt(ms: MuxModel[], state: { frag: number }, pool = true): number[] {
  const util: [number, number][] = [];
  const under: [number, number][] = [];
  const steal = new Map<number, number>();
  const blocksOf = ms.map((m) => m.bps * m.maxBs);
  let totalEmpty = 0;
  const avg = (m: MuxModel) => (m.hist.length ? m.hist.slice(-500).reduce((a, b) => a + b, 0) / m.hist.slice(-500).length : 30);
  ms.forEach((m, i) => {
    const u = avg(m) / m.maxBs;
    if (u >= 0.9) return void util.push([i, u]);
    const empty = Math.trunc(Math.max(1, (0.95 - u) * m.maxBs)) * m.bps;
    under.push([i, empty]);
    totalEmpty += empty;
    steal.set(i, 0);
  });
  util.sort((a, b) => b[1] - a[1]);
  for (const [i] of util) {
    const m = ms[i]!;
    const a = avg(m);
    if (m.waiting + m.running < a * 1.1) continue;
    const inc = Math.min(Math.max(1, Math.trunc(0.1 * a)), Math.trunc(m.waiting + m.running - a)) * m.bps;
    let got = 0;
    for (const [j, empty] of under) {
      const s = Math.min(Math.trunc((inc * empty) / totalEmpty), empty - steal.get(j)!);
      steal.set(j, steal.get(j)! + s);
      got += s;
    }
    blocksOf[i]! += got;
  }
  const out = ms.map(() => 0);
  for (const i of [...under.map(([j]) => j), ...util.map(([j]) => j)]) {
    const remain = blocksOf[i]! - (steal.get(i) ?? 0);
    const bps = ms[i]!.bps;
    out[i] = Math.floor(remain / bps);
    if (!pool) continue;
    if ((remain % bps) + state.frag > bps) {
      out[i]!++;
      state.frag -= bps - (remain % bps);
    } else state.frag += remain % bps;
  }
  for (const i of ms.map((_, k) => k).sort((a, b) => ms[b]!.waiting - ms[a]!.waiting)) {
    if (!pool) break;
    const n = Math.floor(state.frag / ms[i]!.bps);
    out[i]! += n;
    state.frag -= n * ms[i]!.bps;
  }
  return out;
}

test("the blocks lost to rounding go back by MuxServe's rule: one more sequence, then the longest queues", () => {
  const three: ModelSpec[] = [
    { id: 'hot', family: 'llama-3.1-8b', precision: 'fp16', rate: 24 },
    { id: 'c1', family: 'llama-3.1-8b', precision: 'w4a16', rate: 8 },
    { id: 'c2', family: 'llama-3.1-8b', precision: 'fp8-kv8', rate: 5 },
  ];
  const devs = [{ id: 'g0', memoryBytes: 80e9 }];
  const arr = generateWorkload({ models: three.map((m) => m.id), rates: { hot: 24, c1: 8, c2: 5 }, durationMs: 5_000, seed: 3 });
  const sys = buildSystem('muxserve', costModel, { models: three, devices: devs, sloScale: 40 });
  const ctx = setUp({ costModel, models: three, devices: devs, system: sys, arrivals: arr });
  const jobs = three.map((m) => ctx.replicas.find((r) => r.adbs !== undefined && r.model.id === m.id)!);
  assert.equal(jobs.length, 3);
  const oracle: MuxModel[] = jobs.map((r) => ({ maxBs: r.adbs!.maxSeqs, bps: r.adbs!.blocksPerSeq, hist: [], waiting: 0, running: 0 }));
  const state = { frag: 0 };
  let mattered = 0;
  // Three rounds: hot busy with a queue, the cold ones under-used by different amounts, queues
  // that change which model the leftover goes to.
  const rounds = [
    { batch: [1, 0.2, 0.5], waiting: [3, 0, 5] },
    { batch: [1, 0.1, 0.3], waiting: [2, 9, 0] },
    { batch: [0.95, 0.4, 0.05], waiting: [4, 1, 7] },
  ];
  for (const round of rounds) {
    jobs.forEach((r, i) => {
      const b = Math.max(1, Math.round(round.batch[i]! * r.adbs!.maxSeqs));
      r.adbs!.history.push(...Array<number>(500).fill(b));
      oracle[i]!.hist.push(...Array<number>(500).fill(b));
      r.queued = round.waiting[i]! + (i === 0 ? 2 * r.adbs!.maxSeqs : 0);
      oracle[i]!.waiting = r.queued;
    });
    const floors = jobs.map((r) => r.adbs!.maxSeqs);
    const dropped = muxAdapt(oracle.map((m) => ({ ...m })), { frag: 0 }, false);
    const want = muxAdapt(oracle, state);
    if (JSON.stringify(dropped) !== JSON.stringify(want)) mattered++;
    adaptQuotas(ctx);
    assert.deepEqual(jobs.map((r) => r.adbs!.maxSeqs), want, `round ${JSON.stringify(round)} from ${floors}`);
    jobs.forEach((r, i) => (oracle[i]!.maxBs = r.adbs!.maxSeqs));
  }
  // The rule must have mattered: dropping the remainders would have lost sequences.
  assert.ok(mattered > 0, 'no round had a remainder to hand back');
  assert.ok(state.frag < Math.max(...oracle.map((m) => m.bps)), `leftover ${state.frag} is less than a sequence of the largest model`);
});

test("ADBS prefills whole prompts: MuxServe's batch under the token budget, no chunk while memory is short", () => {
  const seq = (id: number, prompt: number): Seq =>
    ({ id, arrivalMs: 0, deadlineMs: 1e9, priority: 0, promptTokens: prompt, outputTokens: 8, decodedTokens: 0, computedTokens: 0, targetTokens: prompt, blocks: 0, started: false, firstTokenMs: 0, finishMs: 0 }) as Seq;
  // In order while the prompts fit 2048 and seats last; a lone prompt past the budget still goes.
  assert.deepEqual(prefillBatch([seq(1, 900), seq(2, 1000), seq(3, 200), seq(4, 10)], 8, 2048).map((s) => s.id), [1, 2]);
  assert.deepEqual(prefillBatch([seq(1, 900), seq(2, 100), seq(3, 200)], 2, 2048).map((s) => s.id), [1, 2]);
  assert.deepEqual(prefillBatch([seq(1, 3000), seq(2, 10)], 8, 2048).map((s) => s.id), [1]);
  // A prefill job whose model has fewer free blocks than a prompt needs prefills none of it.
  const ctx = setUp(config);
  const job = ctx.replicas.find((r) => r.adbs !== undefined && r.model.id === 'hot')!;
  const acc = job.devices[0]!.account;
  const tpb = job.entry.tokensPerBlock;
  const long = seq(1_000_001, 1500);
  ctx.outcomes.set(long.id, { state: 'queued' } as never);
  assert.ok(acc.grow(job.slots[0]!, 9_999_999, acc.available(job.slots[0]!) - Math.ceil(1500 / tpb) + 2), 'fill the pool to just short of the prompt');
  const before = acc.available(job.slots[0]!);
  decideIteration(ctx, job, 0, [long], new Map([[long.id, long]]));
  assert.equal(long.computedTokens, 0);
  assert.equal(long.blocks, 0, 'no partial chunk took blocks');
  assert.equal(acc.available(job.slots[0]!), before);
  // With the memory there, the whole prompt goes in one step.
  acc.release(job.slots[0]!, 9_999_999);
  const work = decideIteration(ctx, job, 0, [], new Map([[long.id, long]]));
  assert.equal(work?.prefill.length, 1);
  assert.equal(work!.prefill[0]!.tokens, 1500);
  // End to end: every prefill job's snapshot shows a batch within the budget and no chunking budget.
  let checked = 0;
  const watching = (s: ModelSnapshot) => {
    if (s.waiting.length > 0) {
      checked++;
      const tokens = s.waiting.reduce((a, w) => a + w.promptTokens, 0);
      assert.ok(s.waiting.length === 1 || tokens <= 2048, `batch of ${tokens} tokens`);
      assert.equal(s.limits.maxBatchTokens, Infinity);
    }
    return fcfs(s);
  };
  simulate({ ...config, arrivals: arrivals.slice(0, 300), system: { ...muxserve, policy: watching } });
  assert.ok(checked > 10);
});
