import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CostModel } from '../lib/scheduler/cost-model.js';
import { contendedSlowdown, stepWork } from '../lib/scheduler/interference.js';
import { deviceLoad, replicaDemand } from '../lib/scheduler/replica-demand.js';

const cm = CostModel.reference();
const prefill = (tokens: number, seqs = 1) => ({ prefillSeqs: seqs, prefillTokens: tokens, decodeSeqs: 0, decodeContext: 0 });
const decode = (seqs: number, ctx = 384) => ({ prefillSeqs: 0, prefillTokens: 0, decodeSeqs: seqs, decodeContext: ctx });

test('work per step: 2 FLOPs per linear parameter per token, the weights streamed once per step, TP divides both', () => {
  const e = cm.entry('llama-3.1-8b', 'fp16', 1);
  const w = stepWork(e, decode(1, 0));
  assert.ok(Math.abs(w.flops - 2 * (8.03e9 - 1.05e9)) / w.flops < 1e-9);
  assert.ok(Math.abs(w.bytes - e.weightBytes - e.kvBytesPerToken) < 1);
  const e4 = cm.entry('llama-3.1-70b', 'fp16', 4);
  assert.ok(Math.abs(stepWork(e4, prefill(512)).flops * 4 - stepWork({ ...e4, tp: 1 }, prefill(512)).flops) < 1);
});

test('interference is precision- and work-aware: complementary steps barely interfere, like steps do', () => {
  const fp16 = cm.entry('llama-3.1-8b', 'fp16', 1);
  const fp8 = cm.entry('llama-3.1-8b', 'fp8-kv8', 1);
  const dec = cm.stepDemand(fp16, decode(32));
  const bigPrefill = cm.stepDemand(fp8, prefill(2048, 4));
  const tinyDecoder = cm.stepDemand(fp8, decode(1));
  // A bandwidth-bound decoder beside a compute-bound prefill: little slowdown either way.
  assert.ok(cm.contendedSlowdown(dec, [bigPrefill]) < 1.1);
  assert.ok(cm.contendedSlowdown(bigPrefill, [dec]) < 1.15);
  // Two FP16 decoders compete for bandwidth; two big prefills for compute.
  assert.ok(cm.contendedSlowdown(dec, [dec]) > 1.1);
  assert.ok(cm.contendedSlowdown(bigPrefill, [bigPrefill]) > 1.25);
  // A batch-1 decoder weighs far less on a prefill than another 2,048-token prefill does.
  assert.ok(cm.contendedSlowdown(bigPrefill, [tinyDecoder]) < cm.contendedSlowdown(bigPrefill, [bigPrefill]));
  // Oversubscription is shared in proportion: n identical saturating steps each take n times as long.
  assert.equal(contendedSlowdown({ compute: 1, memory: 0.1 }, [{ compute: 1, memory: 0.1 }, { compute: 1, memory: 0.1 }]), 3);
  assert.equal(contendedSlowdown({ compute: 0.3, memory: 0.3 }, []), 1);
});

test('calibration: the fluid model reproduces the profiled MPS slowdowns of prefill within 35 % (median error under 15 %)', () => {
  const errors: number[] = [];
  for (const [family, precision, tp] of [['llama-3.1-8b', 'fp16', 1], ['llama-3.1-8b', 'w4a16', 1], ['llama-3.1-8b', 'fp8-kv8', 1], ['qwen-3-32b', 'fp16', 2], ['llama-3.1-70b', 'fp16', 4]] as const) {
    const e = cm.entry(family, precision, tp);
    const q = e.precision.qformat;
    const model = family;
    for (const r of cm.rows.filter((x) => x.model === model && x.qformat === q && x.tp === tp && x.mpsPercentage < 100)) {
      const solo = cm.rows.find((x) => x.model === model && x.qformat === q && x.tp === tp && x.mpsPercentage === 100 && x.batchSize === r.batchSize && x.inputLen === r.inputLen)!;
      const measured = r.ttft / solo.ttft;
      // MPS share s leaves the others 1 - s of the SMs.
      const c = cm.stepDemand(e, prefill(r.batchSize * r.inputLen, r.batchSize), solo.ttft * 1000).compute;
      const predicted = Math.max(1, c / (r.mpsPercentage / 100));
      errors.push(Math.abs(predicted - measured) / measured);
    }
  }
  errors.sort((a, b) => a - b);
  const med = errors[Math.floor(errors.length / 2)]!;
  const p90 = errors[Math.floor(errors.length * 0.9)]!;
  console.log(`MPS slowdown error over ${errors.length} rows: median ${(100 * med).toFixed(1)} %, p90 ${(100 * p90).toFixed(1)} %, max ${(100 * errors.at(-1)!).toFixed(1)} %`);
  assert.ok(med < 0.15, `median ${med}`);
  assert.ok(p90 < 0.35, `p90 ${p90}`);
});

test('a replica\'s demand is its prefill and decode steps\' demands weighted by their busy time; a device\'s load is its tighter resource', () => {
  const fp16 = cm.entry('llama-3.1-8b', 'fp16', 1);
  const awq = cm.entry('llama-3.1-8b', 'w4a16', 1);
  // By hand for a light load: one batch-1 prefill per request (busy rate × its time) and a
  // decode job busy rate × output × TPOT(1) of the time (under one sequence in flight on average).
  const rate = 0.2;
  const [input, output] = [300, 10];
  const pMs = fp16.latency.prefillMs(1, input);
  const dMs = fp16.latency.decodeMs(1, input + output / 2);
  const p = cm.stepDemand(fp16, prefill(input), pMs);
  const d = cm.stepDemand(fp16, decode(1, input + output / 2), dMs);
  const got = replicaDemand(cm, fp16, rate, input, output);
  const busyD = (rate * output * dMs) / 1000;
  assert.ok(busyD < 1);
  assert.ok(Math.abs(got.compute - ((rate * pMs) / 1000) * p.compute - busyD * d.compute) < 1e-12);
  assert.ok(Math.abs(got.memory - ((rate * pMs) / 1000) * p.memory - busyD * d.memory) < 1e-12);
  assert.ok(Math.abs(got.busy - (rate * pMs) / 1000) < 1e-12);
  // At ShareGPT-like means, 8B AWQ at 40 req/s is compute-heavy (slow dequantising prefill) and
  // 8B FP16 at 5 req/s memory-heavy (streams 16 GB a step): paired they load a device less than
  // two of either, where the sum of device-time shares cannot tell the pairs apart.
  const heavyC = replicaDemand(cm, awq, 40, 350, 280);
  const heavyM = replicaDemand(cm, fp16, 5, 350, 280);
  assert.ok(heavyC.compute > heavyC.memory && heavyM.memory > heavyM.compute);
  const mixed = deviceLoad([heavyC, heavyM]);
  assert.ok(mixed < deviceLoad([heavyC, heavyC]) && mixed < deviceLoad([heavyM, heavyM]), `${mixed}`);
  assert.equal(deviceLoad([heavyC, heavyM]), Math.max(heavyC.compute + heavyM.compute, heavyC.memory + heavyM.memory, heavyC.busy, heavyM.busy));
});
