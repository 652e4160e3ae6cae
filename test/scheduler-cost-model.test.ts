import assert from 'node:assert/strict';
import { test } from 'node:test';

import { kvBytesPerToken, MODEL_FAMILIES, PRECISIONS } from '../lib/scheduler/catalog.js';
import { CostModel } from '../lib/scheduler/cost-model.js';
import { PlanError } from '../lib/scheduler/errors.js';
import { iterationMs, OnlineLatencyModel, ProfileLatencyModel } from '../lib/scheduler/latency-model.js';
import { formatProfileCsv, loadReferenceProfiles, parseProfileCsv } from '../lib/scheduler/profiles.js';

const rows = loadReferenceProfiles('apex');
const costModel = new CostModel(rows);

test('the cost model reproduces every MPS-100 profile row it was fitted on within 5 %', () => {
  let checked = 0;
  for (const r of rows) {
    if (r.mpsPercentage !== 100) continue;
    const m = costModel.profile(r.model, r.qformat, r.tp);
    assert.ok(m, `no latency model for ${r.model} ${r.qformat} tp${r.tp}`);
    const ttft = m.prefillMs(r.batchSize, r.batchSize * r.inputLen);
    const tpot = m.decodeMs(r.batchSize, r.inputLen + r.outputLen / 2);
    assert.ok(Math.abs(ttft / (r.ttft * 1000) - 1) < 0.05, `${r.model} ${r.qformat} b${r.batchSize} in${r.inputLen}: TTFT ${ttft} vs ${r.ttft * 1000}`);
    assert.ok(Math.abs(tpot / (r.tpot * 1000) - 1) < 0.05, `${r.model} ${r.qformat} b${r.batchSize} in${r.inputLen}: TPOT ${tpot} vs ${r.tpot * 1000}`);
    checked++;
  }
  assert.ok(checked > 200, `only ${checked} rows checked`);
});

test('between profiled points the fit lies between its neighbours and grows with batch and tokens', () => {
  const m = costModel.entry('llama-3.1-8b', 'fp16', 1).latency;
  const b8 = m.prefillMs(8, 8 * 256);
  const b16 = m.prefillMs(16, 16 * 256);
  const b12 = m.prefillMs(12, 12 * 256);
  assert.ok(b8 < b12 && b12 < b16, `${b8} < ${b12} < ${b16}`);
  assert.ok(m.prefillMs(1, 903) > m.prefillMs(1, 512));
  assert.ok(m.decodeMs(64, 700) > m.decodeMs(32, 700));
  // The notes' sanity figures: 8B FP16 TP1 TTFT 12 ms at batch 1 and 192 ms at batch 32 (256 tokens).
  assert.ok(Math.abs(m.prefillMs(1, 256) - 12.3) < 0.5);
  assert.ok(Math.abs(m.prefillMs(32, 32 * 256) - 192) < 2);
});

test('KV bytes per token match notes §1.2', () => {
  const l8 = MODEL_FAMILIES['llama-3.1-8b']!;
  assert.equal(kvBytesPerToken(l8, 'fp16'), 131072);
  assert.equal(kvBytesPerToken(l8, 'fp8'), 65536);
  assert.equal(kvBytesPerToken(l8, 'int4'), 34816);
  assert.equal(kvBytesPerToken(MODEL_FAMILIES['llama-3.1-70b']!, 'fp16'), 327680);
  assert.equal(kvBytesPerToken(MODEL_FAMILIES['qwen-3-32b']!, 'fp8'), 131072);
  assert.equal(PRECISIONS['w4a8-kv4']!.tokensPerBlock, 64);
});

test('co-location slows steps down, more with more models, and prefill by the MPS profiles', () => {
  assert.equal(costModel.colocationSlowdown(1, 0.5), 1);
  const two = costModel.colocationSlowdown(2, 1);
  const four = costModel.colocationSlowdown(4, 1);
  assert.ok(two > 1.2 && two < 2.5, `prefill slowdown at 2 models: ${two}`);
  assert.ok(four > two);
});

test('the online latency model learns a slowdown from measured steps; the profile model does not', () => {
  const base = costModel.entry('llama-3.1-8b', 'fp16', 1).latency;
  const online = new OnlineLatencyModel(base);
  const shape = { prefillSeqs: 0, prefillTokens: 0, decodeSeqs: 16, decodeContext: 600 };
  const truth = iterationMs(base, shape) * 1.8;
  for (let i = 0; i < 40; i++) online.observe({ ...shape, measuredMs: truth });
  assert.ok(Math.abs(online.decodeMs(16, 600) / truth - 1) < 0.02);
  assert.ok(Math.abs(online.prefillMs(4, 1024) / base.prefillMs(4, 1024) - 1) < 1e-9, 'decode steps must not move the prefill correction');
  const pShape = { prefillSeqs: 4, prefillTokens: 1024, decodeSeqs: 0, decodeContext: 0 };
  for (let i = 0; i < 40; i++) online.observe({ ...pShape, measuredMs: base.prefillMs(4, 1024) * 1.5 });
  assert.ok(Math.abs(online.prefillMs(4, 1024) / (base.prefillMs(4, 1024) * 1.5) - 1) < 0.02);
  base.observe();
  assert.equal(base.prefillMs(4, 1024), costModel.entry('llama-3.1-8b', 'fp16', 1).latency.prefillMs(4, 1024));
});

test('profile CSVs round-trip and bad ones fail naming the file, line and field', () => {
  const sample = rows.slice(0, 24);
  assert.deepEqual(parseProfileCsv(formatProfileCsv(sample), 'x.csv'), sample);
  const lines = formatProfileCsv(sample).split('\n');
  const cells = lines[1]!.split(',');
  cells[10] = 'oops';
  lines[1] = cells.join(',');
  const bad = lines.join('\n');
  assert.throws(() => parseProfileCsv(bad, 'bad.csv'), (e: unknown) => e instanceof PlanError && e.code === 'ERR_PROFILE_CORRUPT' && /bad\.csv:2/.test(e.message) && e.field === 'ttft');
  assert.throws(() => parseProfileCsv('a,b\n1,2\n', 'h.csv'), (e: unknown) => e instanceof PlanError && e.field === 'header');
  const holes = rows.filter((r) => r.model === 'llama-3.1-8b' && r.qformat === 'org' && r.tp === 1 && r.mpsPercentage === 100).filter((r) => !(r.batchSize === 8 && r.inputLen === 512));
  assert.throws(() => new ProfileLatencyModel(holes, 'grid'), (e: unknown) => e instanceof PlanError && /batch 8 at input 512/.test(e.message));
  assert.throws(() => costModel.entry('llama-3.1-70b', 'fp16', 1), (e: unknown) => e instanceof PlanError && /profiled TP: 4/.test(e.message));
});

test('extrapolation past the profiled grid, measured by holding out: batch 16 -> 32 and prompt 256 -> 512', () => {
  const cm = CostModel.reference();
  const groups = new Map<string, typeof cm.rows[number][]>();
  for (const r of cm.rows) if (r.mpsPercentage === 100) { const k = `${r.model}|${r.qformat}|${r.tp}`; (groups.get(k) ?? groups.set(k, []).get(k)!).push(r); }
  const eb: number[] = [], ed: number[] = [], el: number[] = [];
  for (const [k, rows] of groups) {
    const m = new ProfileLatencyModel(rows.filter((r) => r.batchSize <= 16), k);
    for (const r of rows.filter((r) => r.batchSize === 32)) {
      eb.push(Math.abs(m.prefillMs(32, 32 * r.inputLen) - r.ttft * 1000) / (r.ttft * 1000));
      ed.push(Math.abs(m.decodeMs(32, r.inputLen + r.outputLen / 2) - r.tpot * 1000) / (r.tpot * 1000));
    }
    const lens = [...new Set(rows.map((r) => r.inputLen))];
    if (lens.length > 1) {
      const m2 = new ProfileLatencyModel(rows.filter((r) => r.inputLen === 256), k);
      for (const r of rows.filter((r) => r.inputLen === 512)) el.push(Math.abs(m2.prefillMs(r.batchSize, r.batchSize * 512) - r.ttft * 1000) / (r.ttft * 1000));
    }
  }
  const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
  for (const [n, xs] of [['TTFT batch 16->32', eb], ['TPOT batch 16->32', ed], ['TTFT prompt 256->512', el]] as const) {
    console.log(`${n}: ${xs.length} rows, |error| median ${(100 * q(xs, 0.5)).toFixed(1)} %, p90 ${(100 * q(xs, 0.9)).toFixed(1)} %, max ${(100 * Math.max(...xs)).toFixed(1)} %`);
  }
  // What the README states as the error to expect past the grid.
  assert.ok(q(ed, 1) < 0.15 && q(eb, 0.5) < 0.1 && q(el, 0.5) < 0.25);
});
