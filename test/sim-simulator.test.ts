import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CostModel } from '../lib/scheduler/cost-model.js';
import type { ModelSpec } from '../lib/scheduler/types.js';
import { PagedAccount } from '../lib/sim/kv/paged.js';
import { ReferenceSlabAccount } from '../lib/sim/kv/reference-slab.js';
import { SlabAccount } from '../lib/sim/kv/slab.js';
import { StaticAccount } from '../lib/sim/kv/static.js';
import { UnifiedAccount } from '../lib/sim/kv/unified.js';
import { simulate } from '../lib/sim/simulator.js';
import { buildSystem, SYSTEM_NAMES } from '../lib/sim/systems.js';
import { generateWorkload } from '../lib/sim/workload.js';

const costModel = CostModel.reference();
const base: ModelSpec[] = [
  { id: 'fp16', family: 'llama-3.1-8b', precision: 'fp16', rate: 0 },
  { id: 'awq', family: 'llama-3.1-8b', precision: 'w4a16', rate: 0 },
  { id: 'fp8', family: 'llama-3.1-8b', precision: 'fp8-kv8', rate: 0 },
  { id: 'qoq', family: 'llama-3.1-8b', precision: 'w4a8-kv4', rate: 0 },
  { id: 'qwen', family: 'qwen-3-32b', precision: 'fp8-kv8', rate: 0 },
];
const devices = [
  { id: 'g0', memoryBytes: 80e9 },
  { id: 'g1', memoryBytes: 80e9 },
];

function scenario(totalRate: number, seed: number, durationMs = 20_000) {
  const arrivals = generateWorkload({ models: base.map((m) => m.id), totalRate, zipf: 1, durationMs, seed });
  const counts = new Map<string, number>();
  for (const a of arrivals) counts.set(a.model, (counts.get(a.model) ?? 0) + 1);
  const models = base.map((m) => ({ ...m, rate: (counts.get(m.id) ?? 0) / (durationMs / 1000) }));
  return { arrivals, models, input: { models, devices } };
}

test('every system conserves requests: each arrival finished, was dropped, or is still in flight', () => {
  const { arrivals, models, input } = scenario(70, 1);
  for (const name of SYSTEM_NAMES) {
    const r = simulate({ costModel, models, devices, system: buildSystem(name, costModel, input), arrivals, drainMs: 5_000 });
    assert.equal(r.arrivals, arrivals.length, name);
    assert.equal(r.finished + r.dropped + r.inFlight, arrivals.length, name);
    assert.deepEqual(r.outcomes.map((o) => o.id), arrivals.map((a) => a.id), name);
    for (const o of r.outcomes) {
      if (o.state === 'finished') assert.ok(o.ttftMs !== undefined && o.finishMs! >= o.arrivalMs + o.ttftMs, `${name} #${o.id}`);
      if (o.state === 'dropped') assert.equal(o.ttftMs, undefined, `${name}: a dropped request never got a token`);
    }
    const attained = r.outcomes.filter((o) => o.ttftMs !== undefined && o.ttftMs < o.sloMs).length;
    assert.equal(r.sloAttainment, attained / arrivals.length, name);
  }
});

test('a run is deterministic for a seed and changes with it', () => {
  const a = scenario(40, 3);
  const run = (s: ReturnType<typeof scenario>) =>
    simulate({ costModel, models: s.models, devices, system: buildSystem('fineserve', costModel, s.input), arrivals: s.arrivals, drainMs: 5_000 });
  const r1 = run(a);
  const r2 = run(scenario(40, 3));
  assert.deepEqual(r1, r2);
  assert.notDeepEqual(r1.outcomes, run(scenario(40, 4)).outcomes);
});

test('light load meets every SLO; overload does not, and time stays consistent', () => {
  const light = scenario(5, 2);
  const r = simulate({ costModel, models: light.models, devices, system: buildSystem('fineserve', costModel, light.input), arrivals: light.arrivals });
  assert.equal(r.finished, light.arrivals.length);
  assert.equal(r.sloAttainment, 1);
  // Solo 8B FP16 decode is 8–10 ms per token: the simulated TPOT must be of that order.
  assert.ok(r.tpotP50Ms > 7 && r.tpotP50Ms < 40, `TPOT p50 ${r.tpotP50Ms}`);
  const heavy = scenario(400, 2, 10_000);
  const h = simulate({ costModel, models: heavy.models, devices, system: buildSystem('fineserve', costModel, heavy.input), arrivals: heavy.arrivals, drainMs: 5_000 });
  assert.ok(h.sloAttainment < 0.8, `attainment ${h.sloAttainment} at 400 req/s on 2 GPUs`);
});

test('a model with a TPOT SLO attains only requests that finish within it on average, as well as within the TTFT SLO', () => {
  const light = scenario(5, 2);
  const base = simulate({ costModel, models: light.models, devices, system: buildSystem('fineserve', costModel, light.input), arrivals: light.arrivals });
  const p50 = base.tpotP50Ms;
  // A TPOT SLO at the median solo TPOT: about half the multi-token requests miss it, whatever their TTFT.
  const withTpot = light.models.map((m) => ({ ...m, slo: { ttftMs: base.perModel[m.id]!.sloMs, tpotMs: p50 } }));
  const r = simulate({ costModel, models: withTpot, devices, system: buildSystem('fineserve', costModel, { ...light.input, models: withTpot }), arrivals: light.arrivals });
  const met = r.outcomes.filter((o) => o.ttftMs !== undefined && o.ttftMs < o.sloMs && o.state === 'finished' && (o.tpotMs === undefined || o.tpotMs <= o.tpotSloMs!)).length;
  assert.equal(r.sloAttainment, met / r.arrivals);
  assert.ok(r.outcomes.every((o) => o.tpotSloMs === p50), 'every outcome carries its TPOT SLO');
  assert.ok(r.sloAttainment < 0.8 && r.sloAttainment > 0.2, `attainment ${r.sloAttainment} with a TPOT SLO at the median TPOT (${p50.toFixed(1)} ms); ${base.sloAttainment} without`);
  assert.equal(base.sloAttainment, 1);
});

test("MuxServe's split: prefill and decode run as two jobs at once: first tokens and median decode steps come sooner", () => {
  const s = scenario(60, 5, 10_000);
  const split = buildSystem('muxserve', costModel, s.input);
  assert.equal(split.splitPrefillDecode, true);
  const run = (system: typeof split) => simulate({ costModel, models: s.models, devices, system, arrivals: s.arrivals, drainMs: 10_000 });
  // The split alone (MuxServe's adaptive batch scheduling is tested in sim-adbs.test.ts).
  const a = run({ ...split, adaptiveBatching: false });
  const b = run({ ...split, splitPrefillDecode: false, adaptiveBatching: false });
  for (const r of [a, b]) assert.equal(r.finished + r.dropped + r.inFlight, s.arrivals.length);
  // A prompt no longer waits for the decode batch's step to end, nor decode for a prefill chunk; the
  // two contend for the device instead (the TPOT tail is not lower: prefill now runs beside decode).
  assert.ok(a.ttftP50Ms < b.ttftP50Ms && a.ttftP99Ms < b.ttftP99Ms, `TTFT p50/p99 ${a.ttftP50Ms.toFixed(1)}/${a.ttftP99Ms.toFixed(1)} ms split vs ${b.ttftP50Ms.toFixed(1)}/${b.ttftP99Ms.toFixed(1)} mixed`);
  assert.ok(a.tpotP50Ms < b.tpotP50Ms, `TPOT p50 ${a.tpotP50Ms.toFixed(1)} vs ${b.tpotP50Ms.toFixed(1)} ms`);
  assert.ok(a.iterations > b.iterations, 'two jobs step where one did');
});

test('fast-forwarded decode gives the same token accounting as step-by-step decode', () => {
  const s = scenario(10, 6, 10_000);
  const run = (ff: number) =>
    simulate({ costModel, models: s.models, devices, system: buildSystem('fineserve', costModel, s.input), arrivals: s.arrivals, maxFastForward: ff });
  const stepwise = run(1);
  const fast = run(32);
  assert.equal(fast.finished, stepwise.finished);
  // Not equal: co-location is sampled once per fast-forward event, so interleavings differ a little.
  assert.ok(Math.abs(fast.iterations / stepwise.iterations - 1) < 0.02, `each fast-forward event counts its iterations: ${fast.iterations} vs ${stepwise.iterations}`);
  assert.ok(Math.abs(fast.tokenThroughput / stepwise.tokenThroughput - 1) < 0.03, `${fast.tokenThroughput} vs ${stepwise.tokenThroughput}`);
});

test('KV accounts: slab reclaims empty slabs for any model, reserves hold, static strands, unified pads, paged charges maps', () => {
  const mb = 1024 * 1024;
  const slab = new SlabAccount({ poolBytes: 64 * mb, slabBytes: 8 * mb });
  const a = slab.addModel({ key: 'a', blockBytes: 2 * mb, layers: 32, reserveBytes: 0, rate: 1 });
  const b = slab.addModel({ key: 'b', blockBytes: 1 * mb, layers: 32, reserveBytes: 16 * mb, rate: 1 });
  assert.equal(slab.available(a), (8 - 2) * 4, 'two slabs are owed to b');
  assert.ok(slab.grow(a, 1, 24));
  assert.ok(!slab.grow(a, 2, 1), 'b keeps its reserve');
  assert.ok(slab.grow(b, 3, 16));
  slab.release(a, 1);
  assert.equal(slab.available(b), 6 * 8, 'freed slabs serve the other geometry');
  // Fullest-first: a partly used slab is filled before a fresh one is taken.
  assert.ok(slab.grow(a, 4, 1));
  assert.ok(slab.grow(a, 5, 3));
  assert.equal(slab.stats().heldBytes, 3 * 8 * mb);

  const st = new StaticAccount(64 * mb);
  const s0 = st.addModel({ key: 'x', blockBytes: mb, layers: 32, reserveBytes: 32 * mb, rate: 1 });
  const s1 = st.addModel({ key: 'y', blockBytes: mb, layers: 32, reserveBytes: 32 * mb, rate: 1 });
  st.seal();
  assert.ok(st.grow(s0, 1, 32));
  assert.ok(!st.grow(s0, 2, 1), 'static: no borrowing from y');
  assert.equal(st.available(s1), 32);

  const un = new UnifiedAccount(64 * mb);
  un.addModel({ key: 'x', blockBytes: 4 * mb, layers: 32, reserveBytes: 0, rate: 1 });
  const small = un.addModel({ key: 'y', blockBytes: mb, layers: 32, reserveBytes: 0, rate: 1 });
  un.seal();
  assert.equal(un.available(small), 16, 'a 1 MiB block takes a 4 MiB unified block');

  const pg = new PagedAccount({ poolBytes: 256 * mb, pageBytes: 2 * mb, mapCostMs: 0.01 });
  const p0 = pg.addModel({ key: 'x', blockBytes: 2 * mb, layers: 1, reserveBytes: 0, rate: 1 });
  assert.ok(pg.grow(p0, 1, 4));
  assert.ok(Math.abs(pg.takeOverheadMs(p0) - 0.04) < 1e-9);
  assert.equal(pg.takeOverheadMs(p0), 0);

  const ref = new ReferenceSlabAccount(4096 * mb);
  const r32 = ref.addModel({ key: '8b', blockBytes: 2 * mb, layers: 32, reserveBytes: 0, rate: 1 });
  const r64 = ref.addModel({ key: '32b', blockBytes: 2 * mb, layers: 64, reserveBytes: 0, rate: 1 });
  ref.seal();
  const cap32 = ref.available(r32);
  assert.ok(ref.grow(r64, 9, ref.available(r64)));
  assert.equal(ref.available(r32), cap32, 'pools split by layer count do not share');
});

test('the kvcached-style pool charges its map cost per page (a knob): more cost, later first tokens; none, none', () => {
  const s = scenario(30, 8, 10_000);
  const sys = buildSystem('prism', costModel, s.input);
  const run = (mapCostMs: number) => simulate({ costModel, models: s.models, devices, system: sys, arrivals: s.arrivals, drainMs: 5_000, kvOptions: { mapCostMs } });
  const free = run(0);
  const cheap = run(0.008);
  const dear = run(0.165);
  assert.ok(cheap.ttftP50Ms >= free.ttftP50Ms && dear.ttftP50Ms > cheap.ttftP50Ms, `TTFT p50 ${free.ttftP50Ms} / ${cheap.ttftP50Ms} / ${dear.ttftP50Ms}`);
  // Only the paged policy pays it.
  const slab = buildSystem('fineserve', costModel, s.input);
  const a = simulate({ costModel, models: s.models, devices, system: slab, arrivals: s.arrivals, drainMs: 5_000, kvOptions: { mapCostMs: 0 } });
  const b = simulate({ costModel, models: s.models, devices, system: slab, arrivals: s.arrivals, drainMs: 5_000, kvOptions: { mapCostMs: 1 } });
  assert.deepEqual(a, b);
});

test('extrapolation is counted: prompts and batches inside the profiled grid are not, longer ones are', () => {
  const one = (promptTokens: number, n: number) => {
    const arrivals = Array.from({ length: n }, (_, id) => ({ id, model: 'fp16', arrivalMs: 0, promptTokens, outputTokens: 8 }));
    const models = base.map((m) => ({ ...m, rate: m.id === 'fp16' ? 1 : 0.01 }));
    return simulate({ costModel, models, devices, system: buildSystem('prism', costModel, { models, devices }), arrivals, drainMs: 5_000 });
  };
  assert.equal(one(256, 4).extrapolatedShare, 0);
  assert.ok(one(1500, 1).extrapolatedShare > 0, 'a 1,500-token prompt is past the profiled 512');
  assert.ok(one(64, 100).extrapolatedShare > 0.5, 'a decode batch of 100 is past the profiled 32');
});

test('interference by work: a model beside a busy one runs slower than alone, and the precision-blind rule stays available', () => {
  const s = scenario(40, 9, 10_000);
  const sys = buildSystem('prism', costModel, s.input);
  const work = simulate({ costModel, models: s.models, devices, system: sys, arrivals: s.arrivals, drainMs: 5_000 });
  const count = simulate({ costModel, models: s.models, devices, system: sys, arrivals: s.arrivals, drainMs: 5_000, interference: 'count' });
  assert.notDeepEqual(work.outcomes, count.outcomes);
  const solo = generateWorkload({ models: ['fp16'], totalRate: 2, durationMs: 10_000, seed: 9 });
  const models = base.map((m) => ({ ...m, rate: m.id === 'fp16' ? 2 : 0.01 }));
  const alone = simulate({ costModel, models, devices, system: buildSystem('prism', costModel, { models, devices }), arrivals: solo, drainMs: 5_000 });
  // Solo 8B FP16 decode: the profile's 8–10 ms per token, no co-location slowdown.
  assert.ok(alone.tpotP50Ms > 7 && alone.tpotP50Ms < 12, `TPOT p50 ${alone.tpotP50Ms}`);
});
