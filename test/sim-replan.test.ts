// Online re-placement in the simulator: a re-plan at time T moves replicas, which pay drain +
// weights load before serving; and Prism's KVPR migration rule.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { materialize, SHIFTED_MODEL } from '../bench/sim/scenarios.js';
import { prismMigration } from '../lib/scheduler/baselines/prism-migration.js';
import { planPrism } from '../lib/scheduler/baselines/prism.js';
import { CostModel } from '../lib/scheduler/cost-model.js';
import type { ModelSpec, PlacementPlan } from '../lib/scheduler/types.js';
import { ReferenceSlabAccount } from '../lib/sim/kv/index.js';
import { applyReplan, bringUp, checkDrained } from '../lib/sim/migration.js';
import { setUp } from '../lib/sim/setup.js';
import { simulate, type SimConfig } from '../lib/sim/simulator.js';
import { generateWorkload } from '../lib/sim/workload.js';
import { buildSystem, type SystemName } from '../lib/sim/systems.js';

const costModel = CostModel.reference();
const s = materialize({ mix: 'mix4', gpus: 4, rate: 40, sloScale: 40, zipf: 0, lengths: 'sharegpt', durationMs: 20_000, seed: 3, rateShift: 'online' });
const input = { models: s.models, devices: s.devices, sloScale: 40 };
const atMs = 12_000;

/** Two models, one per 80 GB GPU under `system`'s plan, and the plan that swaps their GPUs. */
function swapOnTwoGpus(system: SystemName) {
  const two: ModelSpec[] = [
    { id: 'a', family: 'llama-3.1-8b', precision: 'fp16', rate: 4 },
    { id: 'b', family: 'llama-3.1-8b', precision: 'w4a16', rate: 4 },
  ];
  const devs = [{ id: 'g0', memoryBytes: 80e9 }, { id: 'g1', memoryBytes: 80e9 }];
  const sys = buildSystem(system, costModel, { models: two, devices: devs, sloScale: 40 });
  const [pa, pb] = ['a', 'b'].map((id) => sys.plan.placements.find((p) => p.model === id)!);
  assert.notDeepEqual(pa!.devices, pb!.devices, 'one model per device');
  const swapped: PlacementPlan = { ...sys.plan, version: 2, placements: [{ ...pa!, devices: pb!.devices }, { ...pb!, devices: pa!.devices }] };
  return { two, devs, sys, pa: pa!, swapped };
}

test('a re-plan to the same placement changes nothing; a moved replica serves only after its old one drained and its weights loaded', () => {
  const sys = buildSystem('prism', costModel, input);
  const base = simulate({ costModel, models: s.models, devices: s.devices, system: sys, arrivals: s.arrivals, drainMs: 10_000 });
  const same = simulate({ costModel, models: s.models, devices: s.devices, system: sys, arrivals: s.arrivals, drainMs: 10_000, replan: { atMs, plan: sys.plan } });
  assert.deepEqual(same.outcomes, base.outcomes);
  assert.deepEqual(same.migrations, []);

  // Move the shifted model (TP 1) to another device.
  const p0 = sys.plan.placements.find((p) => p.model === SHIFTED_MODEL)!;
  assert.equal(p0.tp, 1);
  const to = s.devices.map((d) => d.id).find((id) => !p0.devices.includes(id))!;
  const moved: PlacementPlan = { ...sys.plan, version: 2, placements: sys.plan.placements.map((p) => (p === p0 ? { ...p, devices: [to] } : p)) };
  const bw = 10e9;
  const r = simulate({ costModel, models: s.models, devices: s.devices, system: sys, arrivals: s.arrivals, drainMs: 10_000, replan: { atMs, plan: moved, hostToDeviceBytesPerS: bw } });
  assert.equal(r.finished + r.dropped + r.inFlight, s.arrivals.length);
  assert.equal(r.migrations.length, 1);
  const m = r.migrations[0]!;
  assert.equal(m.model, SHIFTED_MODEL);
  assert.deepEqual(m.devices, [to]);
  assert.ok(m.drainedAtMs >= atMs, `drained at ${m.drainedAtMs}`);
  const entry = costModel.entry('llama-3.1-8b', 'w4a16', 1);
  assert.ok(Math.abs(m.readyAtMs - m.drainedAtMs - (entry.weightBytes / bw) * 1000) < 1e-6, 'load time = weight bytes / host-to-device bandwidth');
  const late = r.outcomes.filter((o) => o.model === SHIFTED_MODEL && o.arrivalMs >= atMs);
  assert.ok(late.length > 10, `${late.length} requests of the moved model after the re-plan`);
  for (const o of late) if (o.ttftMs !== undefined) assert.ok(o.arrivalMs + o.ttftMs >= m.readyAtMs, `request ${o.id} got its first token before the moved replica was up`);
  // The wait shows: fewer of the moved model's later requests meet their SLO than without the move.
  const met = (xs: readonly { attained: boolean }[]) => xs.filter((o) => o.attained).length;
  const stayed = base.outcomes.filter((o) => o.model === SHIFTED_MODEL && o.arrivalMs >= atMs);
  assert.ok(met(late) < met(stayed), `${met(late)} vs ${met(stayed)} of ${late.length} met`);
});

test("Prism's migration moves one model off the most pressed device only past its threshold and only if the highest KVPR falls", () => {
  const plan = planPrism(costModel, input);
  const rates = Object.fromEntries(s.models.map((m) => [m.id, m.rate]));
  assert.deepEqual(prismMigration(costModel, input, plan, rates, 1e9).moves, [], 'an unreachable threshold never migrates');
  const hot = prismMigration(costModel, input, plan, { ...rates, 'llama-3.1-8b-fp8-kv8#0': 40 * rates['llama-3.1-8b-fp8-kv8#0']! }, 0.5);
  assert.ok(hot.imbalance > 1.5, `imbalance ${hot.imbalance}`);
  assert.ok(hot.moves.length <= 1, 'one move per check');
  for (const mv of hot.moves) {
    assert.equal(hot.plan.version, plan.version + 1);
    assert.equal(mv.from.length, 1, 'only TP-1 engines move');
    assert.notDeepEqual(mv.from, mv.to);
  }
});

test('under the prefill/decode split a moved replica waits for both old jobs to drain, then both new jobs serve', () => {
  const sys = buildSystem('fineserve', costModel, input);
  assert.equal(sys.splitPrefillDecode, true);
  const p0 = sys.plan.placements.find((p) => p.model === SHIFTED_MODEL)!;
  assert.equal(p0.tp, 1);
  const to = s.devices.map((d) => d.id).find((id) => !p0.devices.includes(id))!;
  const moved: PlacementPlan = { ...sys.plan, version: 2, placements: sys.plan.placements.map((p) => (p === p0 ? { ...p, devices: [to] } : p)) };
  const early = 4_000;
  const r = simulate({ costModel, models: s.models, devices: s.devices, system: sys, arrivals: s.arrivals, drainMs: 20_000, replan: { atMs: early, plan: moved } });
  assert.equal(r.finished + r.dropped + r.inFlight, s.arrivals.length);
  assert.equal(r.migrations.length, 1);
  const m = r.migrations[0]!;
  // Sequences the old decode job held at the re-plan finish there; the model drains after them.
  const old = r.outcomes.filter((o) => o.model === SHIFTED_MODEL && o.arrivalMs < early && o.finishMs !== undefined && o.finishMs > early);
  assert.ok(old.length > 0, 'the old replica was decoding at the re-plan');
  assert.ok(m.drainedAtMs >= Math.max(...old.map((o) => o.finishMs!)), `drained at ${m.drainedAtMs}`);
  // Requests after the move get their first token and finish on the new replica: its decode job runs.
  const late = r.outcomes.filter((o) => o.model === SHIFTED_MODEL && o.arrivalMs >= m.readyAtMs && o.state === 'finished' && o.outputTokens > 1);
  assert.ok(late.length > 10, `${late.length} later requests finished`);
  for (const o of late) assert.ok(o.finishMs! > o.arrivalMs + o.ttftMs!, `request ${o.id}`);
});

test('make-before-break: with overlap a moved replica serves once its weights are loaded, while the old one still drains', () => {
  const sys = buildSystem('prism', costModel, input);
  const p0 = sys.plan.placements.find((p) => p.model === SHIFTED_MODEL)!;
  const to = s.devices.map((d) => d.id).find((id) => !p0.devices.includes(id))!;
  const moved: PlacementPlan = { ...sys.plan, version: 2, placements: sys.plan.placements.map((p) => (p === p0 ? { ...p, devices: [to] } : p)) };
  const bw = 10e9;
  const run = (overlap: boolean) => simulate({ costModel, models: s.models, devices: s.devices, system: sys, arrivals: s.arrivals, drainMs: 10_000, replan: { atMs, plan: moved, hostToDeviceBytesPerS: bw, overlap } });
  const r = run(true);
  assert.equal(r.finished + r.dropped + r.inFlight, s.arrivals.length);
  const m = r.migrations[0]!;
  const load = (costModel.entry('llama-3.1-8b', 'w4a16', 1).weightBytes / bw) * 1000;
  assert.equal(m.drainedAtMs, atMs, 'the load starts at the re-plan');
  assert.ok(Math.abs(m.readyAtMs - atMs - load) < 1e-6);
  // The old replica was still finishing sequences after the new one took its first requests.
  const oldLast = Math.max(...r.outcomes.filter((o) => o.model === SHIFTED_MODEL && o.arrivalMs < atMs && o.finishMs !== undefined).map((o) => o.finishMs!));
  assert.ok(oldLast > m.readyAtMs, `old replica done at ${oldLast}, new one up at ${m.readyAtMs}`);
  // Break-before-make waits for that drain: the new replica comes up later.
  assert.ok(run(false).migrations[0]!.readyAtMs > m.readyAtMs);
});

test('make-before-break holds both copies: a swap takes the new weights out of the KV until the old replica drains, and waits while the KV holds that memory', () => {
  const { two, devs, sys, pa, swapped } = swapOnTwoGpus('prism');
  const arrivals = generateWorkload({ models: ['a', 'b'], rates: { a: 4, b: 4 }, durationMs: 6_000, seed: 1 });
  const config: SimConfig = { costModel, models: two, devices: devs, system: sys, arrivals, drainMs: 10_000, replan: { atMs: 3_000, plan: swapped, overlap: true } };
  const ctx = setUp(config);
  const g0 = ctx.devices.get(pa.devices[0]!)!;
  const pool = g0.account.stats().capacityBytes;
  const aOld = ctx.replicas.find((r) => r.model.id === 'a' && r.readyAtMs === 0)!;
  const slot = aOld.slots[0]!;
  // a's old replica still runs a sequence that holds all of g0's KV.
  const seq = { id: 1e9, arrivalMs: 0, deadlineMs: 1e9, priority: 0, promptTokens: 16, outputTokens: 1e6, decodedTokens: 1, computedTokens: 16, targetTokens: 16, blocks: 0, started: true, firstTokenMs: 1, finishMs: NaN };
  assert.ok(g0.account.grow(slot, seq.id, g0.account.available(slot)));
  aOld.running.push(seq);
  applyReplan(ctx, 3_000, () => {});
  assert.ok(!ctx.readyModels.has('b'), "b's weights wait: g0's KV holds the memory they need");
  assert.equal(g0.account.stats().capacityBytes, pool, 'nothing withheld while waiting');
  // The sequence finishes; the retry finds the room and b loads beside a's old copy.
  g0.account.release(slot, seq.id);
  bringUp(ctx, 'b', 3_050);
  assert.ok(ctx.readyModels.has('b'));
  const eb = costModel.entry('llama-3.1-8b', 'w4a16', 1);
  const bBytes = eb.weightBytes + eb.activationBytes;
  const during = pool - g0.account.stats().capacityBytes;
  assert.ok(Math.abs(during - bBytes) <= 2 * 1024 * 1024, `withheld ${during} B while both copies are resident, b needs ${bBytes} B`);
  assert.equal(ctx.migrations.find((m) => m.model === 'b')!.drainedAtMs, 3_050, 'the load began when the memory was free');
  // a's old replica drains: its weights leave g0 and the pool is whole again.
  aOld.running.length = 0;
  checkDrained(ctx, 'a', 4_000);
  assert.equal(g0.account.stats().capacityBytes, pool);
  // End to end: every request accounted for, both models moved.
  const r = simulate(config);
  assert.equal(r.finished + r.dropped + r.inFlight, arrivals.length);
  assert.deepEqual(new Set(r.migrations.map((m) => m.model)), new Set(['a', 'b']));
});

test('static partitions under make-before-break: a new engine loads only once its weights and partition fit beside the live partitions', () => {
  const { two, devs, sys, pa, swapped } = swapOnTwoGpus('static');
  assert.equal(sys.kv, 'static');
  const arrivals = generateWorkload({ models: ['a', 'b'], rates: { a: 4, b: 4 }, durationMs: 8_000, seed: 1 });
  const config: SimConfig = { costModel, models: two, devices: devs, system: sys, arrivals, drainMs: 20_000, replan: { atMs: 3_000, plan: swapped, overlap: true } };
  const ctx = setUp(config);
  const g0 = ctx.devices.get(pa.devices[0]!)!;
  const aOld = ctx.replicas.find((r) => r.model.id === 'a' && r.readyAtMs === 0)!;
  const bNew = ctx.replicas.find((r) => r.model.id === 'b' && r.readyAtMs === Infinity)!;
  assert.equal(g0.account.available(bNew.slots[0]!), 0, 'no partition before the engine starts');
  // a's old engine holds one short sequence: its partition is still its own, however empty.
  const seq = { id: 1e9, arrivalMs: 0, deadlineMs: 1e9, priority: 0, promptTokens: 16, outputTokens: 1e6, decodedTokens: 1, computedTokens: 16, targetTokens: 16, blocks: 0, started: true, firstTokenMs: 1, finishMs: NaN };
  assert.ok(g0.account.grow(aOld.slots[0]!, seq.id, 1));
  aOld.running.push(seq);
  applyReplan(ctx, 3_000, () => {});
  assert.ok(!ctx.readyModels.has('b'), "b waits: a's partition fills g0 though it holds one block");
  assert.equal(g0.account.available(bNew.slots[0]!), 0);
  // a's old engine drains and exits: its weights and partition are free, b loads with its own partition.
  g0.account.release(aOld.slots[0]!, seq.id);
  aOld.running.length = 0;
  checkDrained(ctx, 'a', 4_000);
  assert.equal(g0.account.available(aOld.slots[0]!), 0, "the exited engine's partition is gone");
  bringUp(ctx, 'b', 4_050);
  assert.ok(ctx.readyModels.has('b'));
  const eb = costModel.entry('llama-3.1-8b', 'w4a16', 1);
  const blockBytes = eb.tokensPerBlock * eb.kvBytesPerToken;
  const partition = swapped.placements.find((p) => p.model === 'b')!.reserveBytes;
  assert.ok(partition > 0);
  const got = g0.account.available(bNew.slots[0]!) * blockBytes;
  assert.ok(got > 0 && got <= partition && partition - got < blockBytes + (eb.weightBytes + eb.activationBytes), `b's partition ${got} B of the ${partition} B its plan gives`);
  // End to end: both models move and serve after the move.
  const r = simulate(config);
  assert.equal(r.finished + r.dropped + r.inFlight, arrivals.length);
  assert.deepEqual(new Set(r.migrations.map((m) => m.model)), new Set(['a', 'b']));
  for (const m of r.migrations) {
    const after = r.outcomes.filter((o) => o.model === m.model && o.arrivalMs > m.readyAtMs);
    assert.ok(after.length > 0 && after.every((o) => o.finishMs !== undefined), `${m.model}'s new engine serves what arrives after it is up`);
  }
});

test("the reference's per-layer-count pools give a make-before-break load free slabs in proportion to their sizes, or make it wait", () => {
  const acc = new ReferenceSlabAccount(8e9);
  const blk = (layers: number) => 32 * 2 * layers * 1024;
  const shallow = acc.addModel({ key: 's', blockBytes: blk(32), layers: 32, reserveBytes: 0, rate: 1, tokensPerBlock: 32 } as never);
  const deep = acc.addModel({ key: 'd', blockBytes: blk(64), layers: 64, reserveBytes: 0, rate: 1, tokensPerBlock: 32 } as never);
  acc.seal();
  const pool = acc.stats().capacityBytes;
  // The deep pool is full: a load that needs any of its share waits, though the shallow pool is empty.
  assert.ok(acc.grow(deep, 1, acc.available(deep)));
  assert.equal(acc.withhold(1e9), false);
  assert.equal(acc.stats().capacityBytes, pool, 'nothing withheld from either pool');
  acc.release(deep, 1);
  const shallowBefore = acc.available(shallow);
  const deepBefore = acc.available(deep);
  assert.ok(acc.withhold(1e9));
  const taken = pool - acc.stats().capacityBytes;
  assert.ok(taken >= 1e9 && taken < 1e9 + 4 * 64 * 1024 * 1024, `withheld ${taken} B for 1 GB of weights`);
  // Each pool gave in proportion to its size.
  const fracS = 1 - acc.available(shallow) / shallowBefore;
  const fracD = 1 - acc.available(deep) / deepBefore;
  assert.ok(fracS > 0 && fracD > 0 && Math.abs(fracS - fracD) < 0.05, `shallow gave ${fracS}, deep ${fracD}`);
  assert.ok(acc.withhold(0));
  assert.equal(acc.stats().capacityBytes, pool);
});
