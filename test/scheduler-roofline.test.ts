import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { main as latencyFit } from '../bench/sim/latency-fit.js';
import { CostModel } from '../lib/scheduler/cost-model.js';
import { DEVICE_PEAKS } from '../lib/scheduler/interference.js';
import { loadReferenceProfiles, referenceProfilePath } from '../lib/scheduler/profiles.js';
import { stepTimes } from '../lib/scheduler/roofline.js';
import { absQuantile, fitAll, holdOut, rooflineConfig, type FitRowError } from '../lib/scheduler/roofline-fit.js';

assert.ok(existsSync(referenceProfilePath()), `the reference H100 profiles are missing at ${referenceProfilePath()}; the roofline is fitted to them where they lie (never copied into the repo)`);
const rows = loadReferenceProfiles('apex');
const fits = fitAll(rows);
const name = (r: FitRowError): string => `${r.model} ${r.qformat} TP${r.tp} batch ${r.batch} input ${r.input} ${r.kind.toUpperCase()}: measured ${r.measuredMs.toFixed(2)} ms, roofline ${r.predictedMs.toFixed(2)} ms (${(100 * r.error).toFixed(1)} %)`;
const scratch = mkdtempSync(join(tmpdir(), 'fineserve-roofline-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

test('work per step from first principles: FLOPs, bytes and all-reduce traffic per device', () => {
  const fp16 = rooflineConfig('llama-3.1-8b', 'org', 1);
  const h100 = DEVICE_PEAKS['h100']!;
  // Batch-1 decode streams the weights once (16 GB less the input embedding table): ~4.5 ms at 3.35 TB/s.
  const d1 = stepTimes(fp16, { prefillSeqs: 0, prefillTokens: 0, decodeSeqs: 1, decodeContext: 0 });
  assert.ok(Math.abs(d1.memory * 1000 - 15.0e9 / 3.35e12 * 1000) < 0.1, `decode memory ${d1.memory * 1000} ms`);
  assert.equal(d1.network, 0);
  // A 4,096-token prefill: ~2 FLOPs per linear parameter per token at the BF16 peak, attention on top.
  const p = stepTimes(fp16, { prefillSeqs: 1, prefillTokens: 4096, decodeSeqs: 0, decodeContext: 0 });
  const gemm = (2 * (8.03e9 - 1.05e9) * 4096) / h100.bf16;
  assert.ok(p.compute > gemm && p.compute < 1.2 * gemm, `prefill compute ${p.compute} vs GEMMs ${gemm}`);
  // FP8 GEMMs run at twice the BF16 rate; TP 2 halves the work per device and adds NVLink traffic.
  const fp8 = stepTimes(rooflineConfig('llama-3.1-8b', 'fp8_kv8', 1), { prefillSeqs: 1, prefillTokens: 4096, decodeSeqs: 0, decodeContext: 0 });
  assert.ok(fp8.compute < 0.6 * p.compute);
  const tp2 = stepTimes(rooflineConfig('llama-3.1-8b', 'org', 2), { prefillSeqs: 1, prefillTokens: 4096, decodeSeqs: 0, decodeContext: 0 });
  assert.ok(Math.abs(tp2.compute / p.compute - 0.5) < 1e-9 && tp2.network > 0);
  // Decoders read their KV: 64 sequences at 2,048 tokens of FP16 KV is 17 GB more than batch 1.
  const d64 = stepTimes(fp16, { prefillSeqs: 0, prefillTokens: 0, decodeSeqs: 64, decodeContext: 2048 });
  assert.ok((d64.memory - d1.memory) * h100.hbm > 64 * 2048 * 131072);
});

test('the fit on the reference profiles: every row within its tolerance, each misfit named', () => {
  const all = fits.flatMap((f) => f.rows);
  assert.equal(all.length, 2 * rows.filter((r) => r.mpsPercentage === 100).length);
  const tpot = all.filter((r) => r.kind === 'tpot');
  const ttft = all.filter((r) => r.kind === 'ttft');
  for (const r of tpot) assert.ok(Math.abs(r.error) <= 0.12, name(r));
  // TTFT rows are noisy (a smaller batch sometimes slower than a larger one): a row off by more
  // than 25 % must be a spike, out of line with an adjacent batch by more than 20 % against what
  // the model says of the two; no row past 60 %.
  for (const f of fits) {
    const t = f.rows.filter((r) => r.kind === 'ttft');
    for (const r of t) {
      assert.ok(Math.abs(r.error) <= 0.6, name(r));
      if (Math.abs(r.error) <= 0.25) continue;
      const off = t
        .filter((o) => o.input === r.input && (o.batch === 2 * r.batch || 2 * o.batch === r.batch))
        .some((o) => {
          const ratio = o.measuredMs / r.measuredMs / (o.predictedMs / r.predictedMs);
          return ratio < 0.8 || ratio > 1.25;
        });
      assert.ok(off, `not a spike between its neighbours, yet off by more than 25 %: ${name(r)}`);
    }
  }
  const within = (xs: FitRowError[]): number => xs.filter((r) => Math.abs(r.error) <= 0.1).length / xs.length;
  assert.ok(within(tpot) >= 0.99, `TPOT within 10 %: ${within(tpot)}`);
  assert.ok(within(ttft) >= 0.7 && absQuantile(ttft, 0.5) <= 0.07 && absQuantile(ttft, 0.9) <= 0.18, `TTFT within 10 %: ${within(ttft)}, median ${absQuantile(ttft, 0.5)}, p90 ${absQuantile(ttft, 0.9)}`);
  for (const f of fits) {
    const p = f.params;
    assert.ok(p.computeEff > 0.1 && p.computeEff <= 1 && p.memoryEff > 0.05 && p.memoryEff <= 1 && p.prefillOverheadMs >= 0 && p.decodeOverheadMs >= 0, `${f.key}: ${JSON.stringify(p)}`);
  }
});

test('held-out edge of the grid: the roofline extrapolates better than the straight lines (measured bounds)', () => {
  const h = holdOut(rows);
  const q = (xs: readonly FitRowError[], p: number): number => absQuantile(xs, p);
  // The simulator's extrapolation (profile inside, roofline outside); bounds are what it measured, rounded up.
  const bounds = { ttftBatch: [0.07, 0.17, 0.34], tpotBatch: [0.02, 0.06, 0.11], ttftPrompt: [0.11, 0.32, 0.61], tpotPrompt: [0.02, 0.05, 0.08] } as const;
  for (const [k, [med, p90, max]] of Object.entries(bounds) as [keyof typeof bounds, readonly number[]][]) {
    const g = h.grid[k];
    const l = h.linear[k];
    assert.ok(g.length >= 36, `${k}: ${g.length} held-out rows`);
    assert.ok(q(g, 0.5) <= med! && q(g, 0.9) <= p90! && q(g, 1) <= max!, `${k}: median ${q(g, 0.5)}, p90 ${q(g, 0.9)}, max ${q(g, 1)}; worst ${name([...g].sort((a, b) => Math.abs(b.error) - Math.abs(a.error))[0]!)}`);
    assert.ok(q(g, 0.5) <= q(l, 0.5) && q(g, 1) <= q(l, 1), `${k}: simulator median ${q(g, 0.5)} max ${q(g, 1)} vs linear ${q(l, 0.5)} ${q(l, 1)}`);
  }
  // The straight lines' errors the README quoted before: TTFT batch p90 38 %, prompt p90 83 %.
  assert.ok(q(h.linear.ttftBatch, 0.9) > 0.3 && q(h.linear.ttftPrompt, 0.9) > 0.6);
});

test('the simulator steps by the profile inside the grid and the roofline past it', () => {
  const cm = CostModel.reference();
  const e = cm.entry('llama-3.1-8b', 'fp8-kv8', 1);
  for (const r of rows.filter((x) => x.model === 'llama-3.1-8b' && x.qformat === 'fp8_kv8' && x.tp === 1 && x.mpsPercentage === 100)) {
    assert.equal(e.stepLatency.prefillMs(r.batchSize, r.batchSize * r.inputLen), e.latency.prefillMs(r.batchSize, r.batchSize * r.inputLen));
    assert.equal(e.stepLatency.decodeMs(r.batchSize, r.inputLen + r.outputLen / 2), e.latency.decodeMs(r.batchSize, r.inputLen + r.outputLen / 2));
  }
  // Decode is continuous at the edge and grows past it, where the straight line falls (3 ms at 256).
  const edge = e.latency.contexts.at(-1)!;
  assert.ok(Math.abs(e.stepLatency.decodeMs(32.001, edge) / e.latency.decodeMs(32, edge) - 1) < 1e-3);
  assert.ok(e.stepLatency.decodeMs(256, 1024) > e.stepLatency.decodeMs(128, 1024) && e.stepLatency.decodeMs(128, 1024) > e.stepLatency.decodeMs(32, 1024));
  assert.ok(e.latency.decodeMs(256, 1024) < e.latency.decodeMs(32, 1024), 'the linear extrapolation this replaces falls with batch here');
  // 4 x 2,048-token prefill is 8,192 tokens, as batch 16 x 512 is (measured 139 ms): the roofline agrees, the line does not.
  const measured = rows.find((r) => r.model === 'llama-3.1-8b' && r.qformat === 'fp8_kv8' && r.tp === 1 && r.mpsPercentage === 100 && r.batchSize === 16 && r.inputLen === 512)!.ttft * 1000;
  assert.ok(Math.abs(e.stepLatency.prefillMs(4, 8192) / measured - 1) < 0.2, `${e.stepLatency.prefillMs(4, 8192)} vs ${measured}`);
  assert.equal(new CostModel(rows, { extrapolation: 'linear' }).entry('llama-3.1-8b', 'fp8-kv8', 1).stepLatency.decodeMs(256, 1024), e.latency.decodeMs(256, 1024));
});

test('the same fit on an H200: memory-bound steps faster by the HBM ratio at most, compute-bound ones unchanged', () => {
  const m = fits.find((f) => f.key === 'llama-3.1-70b|org|4')!.model;
  const h200 = m.on(DEVICE_PEAKS['h200']!);
  const dec = m.decodeMs(64, 2048) / h200.decodeMs(64, 2048);
  assert.ok(dec > 1.05 && dec <= 4.8 / 3.35, `decode H100/H200 ${dec}`);
  assert.ok(Math.abs(m.prefillMs(8, 16384) / h200.prefillMs(8, 16384) - 1) < 0.05);
});

test('npm run bench:sim -- --latency-fit writes the per-row table', () => {
  const status = latencyFit(scratch);
  const r = JSON.parse(readFileSync(join(scratch, 'latency-fit.json'), 'utf8')) as { rows: { predictedMs: number }[]; failures: string[]; holdOut: Record<string, unknown> };
  assert.equal(status, 0, r.failures.join('\n'));
  assert.equal(r.rows.length, 2 * rows.filter((x) => x.mpsPercentage === 100).length);
  assert.ok(r.rows.every((x) => Number.isFinite(x.predictedMs)));
  assert.deepEqual(Object.keys(r.holdOut), ['linear', 'roofline', 'simulator']);
});
