import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PlanError } from '../lib/scheduler/errors.js';
import { generateWorkload, modelRates, SHAREGPT_INPUT, SHAREGPT_OUTPUT } from '../lib/sim/workload.js';

const models = ['a', 'b', 'c', 'd'];

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(q * s.length)]!;
}

test('the workload is a function of its seed', () => {
  const spec = { models, totalRate: 20, zipf: 1, durationMs: 20_000, seed: 7 };
  assert.deepEqual(generateWorkload(spec), generateWorkload(spec));
  assert.notDeepEqual(generateWorkload(spec), generateWorkload({ ...spec, seed: 8 }));
});

test('lengths follow the ShareGPT-like fit: p95 near 903 in and 631 out, within the filter', () => {
  const w = generateWorkload({ models, totalRate: 200, durationMs: 60_000, seed: 1 });
  const ins = w.map((a) => a.promptTokens);
  const outs = w.map((a) => a.outputTokens);
  assert.ok(Math.abs(quantile(ins, 0.95) / SHAREGPT_INPUT.p95 - 1) < 0.08, `p95 in ${quantile(ins, 0.95)}`);
  assert.ok(Math.abs(quantile(outs, 0.95) / SHAREGPT_OUTPUT.p95 - 1) < 0.08, `p95 out ${quantile(outs, 0.95)}`);
  assert.ok(w.every((a) => a.promptTokens >= 4 && a.promptTokens <= 2048 && a.promptTokens + a.outputTokens <= 4096));
});

test('rates follow Zipf popularity and Poisson counts; CV raises burstiness', () => {
  const rates = modelRates({ models, totalRate: 25, zipf: 1, durationMs: 1, seed: 3 });
  const sorted = Object.values(rates).sort((a, b) => b - a);
  assert.ok(Math.abs(sorted.reduce((a, b) => a + b, 0) - 25) < 1e-9);
  assert.ok(Math.abs(sorted[0]! / sorted[1]! - 2) < 1e-9, 'rank 1 has twice the rate of rank 2 at s = 1');
  const w = generateWorkload({ models, rates: { a: 10, b: 10, c: 10, d: 10 }, durationMs: 100_000, seed: 2 });
  const n = w.filter((a) => a.model === 'a').length;
  assert.ok(Math.abs(n - 1000) < 4 * Math.sqrt(1000), `count ${n} for an expected 1000`);
  const cvOf = (cv: number): number => {
    const t = generateWorkload({ models: ['a'], rates: { a: 10 }, durationMs: 200_000, seed: 4, cv }).map((a) => a.arrivalMs);
    const gaps = t.slice(1).map((x, i) => x - t[i]!);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    return Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length) / mean;
  };
  assert.ok(Math.abs(cvOf(1) - 1) < 0.1);
  assert.ok(Math.abs(cvOf(3) - 3) < 0.5, `cv ${cvOf(3)}`);
});

test('phases change rates over time', () => {
  const w = generateWorkload({ models: ['a'], rates: { a: 10 }, durationMs: 60_000, seed: 5, phases: [{ atMs: 30_000, multipliers: { a: 4 } }] });
  const early = w.filter((a) => a.arrivalMs < 30_000).length;
  const late = w.length - early;
  assert.ok(late / early > 3 && late / early < 5, `${early} then ${late}`);
});

test('bad workload inputs are typed errors naming the field', () => {
  assert.throws(() => generateWorkload({ models, totalRate: -1, durationMs: 10, seed: 1 }), (e: unknown) => e instanceof PlanError && e.field === 'totalRate');
  assert.throws(() => generateWorkload({ models, totalRate: 1, durationMs: 10, seed: 1, cv: 0 }), (e: unknown) => e instanceof PlanError && e.field === 'cv');
});
