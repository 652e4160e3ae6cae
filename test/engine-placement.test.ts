// The Engine's global scheduler as a pure function: placement under memory and KV limits, typed
// failure with every device's reason, the replica rules, and re-planning that moves for a shift
// and not for noise.
import assert from 'node:assert/strict';
import test from 'node:test';

import { evaluatePlacement, improvePlacement, placeModel, PlacementFailure, type PlacementDevice, type PlacementModel } from '../lib/engine/placement.js';
import type { LatencyModel } from '../lib/scheduler/latency-model.js';

const MiB = 2 ** 20;

/** A device-independent latency: prefill 0.5 ms/token, a decode step 2 ms + 0.5 ms per sequence. */
const LINEAR: LatencyModel = {
  prefillMs: (_b, tokens) => 0.5 * tokens,
  decodeMs: (b) => 2 + 0.5 * b,
  observe: () => undefined,
};

function model(id: string, over: Partial<PlacementModel> = {}): PlacementModel {
  return {
    id,
    rate: 1,
    promptTokens: 64,
    outputTokens: 32,
    ttftMs: 200,
    weightBytes: 100 * MiB,
    kvBytesPerToken: 1024,
    kvFloorBytes: 2 * MiB,
    maxBatch: 64,
    latency: () => LINEAR,
    moveCostS: 0.5,
    ...over,
  };
}

const DEVICES: PlacementDevice[] = [
  { id: 'd0', kind: 'cpu×1', memoryBytes: 1024 * MiB, kvBytes: 64 * MiB },
  { id: 'd1', kind: 'cpu×1', memoryBytes: 1024 * MiB, kvBytes: 64 * MiB },
];

function placeAll(models: PlacementModel[], devices = DEVICES): Map<string, readonly string[]> {
  let a = new Map<string, readonly string[]>();
  for (const m of models) {
    const r = placeModel(models.filter((x) => a.has(x.id) || x.id === m.id), devices, a, m.id);
    assert.ok(!(r instanceof PlacementFailure), r instanceof PlacementFailure ? r.message : '');
    a = new Map(r.assignment);
  }
  return a;
}

test('hot models repel: two busy models go to different devices, and the plan scores each replica with a reason', () => {
  const models = [model('a', { rate: 4 }), model('b', { rate: 4 })];
  const a = placeAll(models);
  assert.notDeepEqual(a.get('a'), a.get('b'));
  const e = evaluatePlacement(models, DEVICES, a);
  assert.equal(e.replicas.length, 2);
  for (const r of e.replicas) {
    assert.ok(r.attainment > 0 && r.attainment <= 1);
    assert.match(r.reason, /utilization 0\.\d+: predicted TTFT [\d.]+ ms against an SLO of 200 ms/);
  }
  // Stacked on one device, the same load predicts a worse plan.
  assert.ok(evaluatePlacement(models, DEVICES, new Map([['a', ['d0']], ['b', ['d0']]])).score < e.score);
});

test('memory and KV caps are hard limits; a model that fits no device names each constraint', () => {
  const small: PlacementDevice[] = [
    { id: 'd0', kind: 'cpu×1', memoryBytes: 150 * MiB, kvBytes: 64 * MiB },
    { id: 'd1', kind: 'cpu×1', memoryBytes: 1024 * MiB, kvBytes: 3 * MiB },
  ];
  const a = placeAll([model('a')], small);
  const b = placeModel([model('a'), model('b')], small, a, 'b');
  assert.ok(!(b instanceof PlacementFailure));
  assert.deepEqual([a.get('a'), b.assignment.get('b')].flat().sort(), ['d0', 'd1']);
  const c = placeModel([model('a'), model('b'), model('c')], small, b.assignment, 'c');
  assert.ok(c instanceof PlacementFailure);
  assert.deepEqual(
    c.reasons.map((r) => [r.device, r.constraint]),
    [
      ['d0', 'memory'],
      ['d1', 'kv'],
    ],
  );
  assert.match(c.message, /"c" fits no device: d0: weights 200 MiB .* exceed its memoryBytes 150 MiB; d1: KV reserves 4\.00 MiB .* slab of 3\.00 MiB/);
});

test('replicas: one per device at most, a fixed count is honoured, a pinned model stays put', () => {
  const fixed = placeModel([model('a', { replicas: 2 })], DEVICES, new Map(), 'a');
  assert.ok(!(fixed instanceof PlacementFailure));
  assert.deepEqual([...fixed.assignment.get('a')!].sort(), ['d0', 'd1']);
  const three = placeModel([model('a', { replicas: 3 })], DEVICES, new Map(), 'a');
  assert.ok(three instanceof PlacementFailure);
  assert.match(three.message, /2 of the 3 replicas/);
  const pinned = placeModel([model('a', { rate: 50, device: 'd1' })], DEVICES, new Map(), 'a');
  assert.ok(!(pinned instanceof PlacementFailure));
  assert.deepEqual(pinned.assignment.get('a'), ['d1']);
  const moved = improvePlacement([model('a', { rate: 50, device: 'd1' })], DEVICES, pinned.assignment);
  assert.deepEqual(moved.moves, [], 'a pinned model never moves');
});

test('a rate shift re-plans; unchanged rates do not; the move must pay its cost over the horizon', () => {
  const calm = [model('hot', { rate: 0.5 }), model('b', { rate: 3 }), model('c', { rate: 3 })];
  const a = placeAll(calm);
  assert.deepEqual(improvePlacement(calm, DEVICES, a).moves, [], 'the plan made for these rates is kept');
  const shifted = calm.map((m) => (m.id === 'hot' ? { ...m, rate: 6 } : m));
  const r = improvePlacement(shifted, DEVICES, a);
  assert.ok(r.moves.length > 0, 'the shift moved something');
  assert.ok(r.after.score > r.before.score * 1.05);
  // After the moves the plan is stable: a second re-plan at the same rates does nothing.
  assert.deepEqual(improvePlacement(shifted, DEVICES, r.assignment).moves, []);
  // A move that costs more than it gains over the horizon is not made.
  const costly = shifted.map((m) => ({ ...m, moveCostS: 1e6 }));
  assert.deepEqual(improvePlacement(costly, DEVICES, a).moves, []);
  for (const ds of r.assignment.values()) assert.equal(new Set(ds).size, ds.length, 'never two replicas on one device');
  for (const m of shifted) assert.ok((r.assignment.get(m.id) ?? []).length >= 1, `${m.id} keeps a replica`);
});

test('what is measured bounds a re-plan: moves only take load off a troubled device, downhill, and a measured load scales the prediction', () => {
  // Three models at rates the planner thinks light; measured, 'b' takes four times its prediction.
  const light = [model('a', { rate: 2 }), model('b', { rate: 2 }), model('c', { rate: 2 })];
  const a = new Map<string, readonly string[]>([
    ['a', ['d0']],
    ['b', ['d0']],
    ['c', ['d1']],
  ]);
  assert.deepEqual(improvePlacement(light, DEVICES, a).moves, [], 'as predicted, two light models share a device');
  const seen = light.map((m) => (m.id === 'b' ? { ...m, loadScale: 4 } : m));
  const before = evaluatePlacement(light, DEVICES, a);
  const scaled = evaluatePlacement(seen, DEVICES, a);
  const load = (e: typeof before, id: string): number => e.replicas.find((r) => r.model === id)!.load;
  assert.ok(load(scaled, 'b') > 3 * load(before, 'b'), 'the scale multiplies its device time');
  const moved = improvePlacement(seen, DEVICES, a);
  assert.ok(moved.moves.length > 0 && moved.moves.every((m) => m.kind !== 'remove' && m.to === 'd1'), JSON.stringify(moved.moves));
  // The same moves, judged against measurements: d0 in trouble and busier than d1 lets them...
  const busy = new Map([
    ['d0', 0.9],
    ['d1', 0.3],
  ]);
  assert.deepEqual(improvePlacement(seen, DEVICES, a, { relieve: { troubled: new Set(['d0']), busy } }).moves.slice(0, 1), moved.moves.slice(0, 1));
  // ...but not when nothing is measured in trouble there, nor onto a device about as busy.
  assert.deepEqual(improvePlacement(seen, DEVICES, a, { relieve: { troubled: new Set(['d1']), busy } }).moves, []);
  assert.deepEqual(improvePlacement(seen, DEVICES, a, { relieve: { troubled: new Set(['d0']), busy: new Map([['d0', 0.9], ['d1', 0.85]]) } }).moves, []);
  assert.deepEqual(improvePlacement(seen, DEVICES, a, { relieve: { troubled: new Set(['d0', 'd1']), busy: new Map([['d0', 0.9], ['d1', 0.3]]) } }).moves.slice(0, 1), moved.moves.slice(0, 1), 'trouble at the destination does not forbid a move onto a much less busy device');
});
