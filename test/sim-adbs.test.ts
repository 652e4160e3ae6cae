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
import { adaptQuotas, ADBS_ADAPT_MS, contenders } from '../lib/sim/adbs.js';
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
    const blocks = Math.floor((pool * w(r)) / total);
    assert.equal(r.adbs!.blocks.get(d), blocks, r.model.id);
    const perSeq = Math.max(1, Math.floor(meanLen / r.entry.tokensPerBlock));
    assert.equal(r.adbs!.blocksPerSeq, perSeq);
    assert.equal(r.adbs!.maxSeqs, Math.max(1, Math.floor(blocks / perSeq)));
  }
  const [a, b] = jobs;
  assert.ok(Math.abs(a!.adbs!.blocks.get(d)! / b!.adbs!.blocks.get(d)! - w(a!) / w(b!)) < 0.01, 'quotas in proportion to rate x blocks per token');
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
