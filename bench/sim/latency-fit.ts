/**
 * The roofline latency model (lib/scheduler/roofline.ts) fitted to the reference H100 profiles:
 * per-row error of the fit, how many rows no model that grows with batch could fit within 10 %
 * (the profiles' own noise), and the error past the grid by holding its edge out, for the
 * profile's linear extrapolation, the roofline alone and the simulator's combination, side by side.
 * Writes bench/results/latency-fit.json; exits 1 if a prediction is not finite or the simulator's
 * extrapolation is worse than the linear one (median or max) on any hold-out.
 *
 *   npm run bench:sim -- --latency-fit [--out DIR]
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { DEVICE_PEAKS } from '../../lib/scheduler/interference.js';
import { loadReferenceProfiles, type ProfileRow } from '../../lib/scheduler/profiles.js';
import { NVLINK_BYTES_PER_S, SMOOTH_MAX_P } from '../../lib/scheduler/roofline.js';
import { absQuantile, fitAll, holdOut, soloGroups, type FitRowError, type HoldOut } from '../../lib/scheduler/roofline-fit.js';

const pct = (x: number): number => Math.round(1000 * x) / 10;

function summary(errors: readonly FitRowError[]): { rows: number; within10: number; medianPct: number; p90Pct: number; maxPct: number } {
  return {
    rows: errors.length,
    within10: errors.filter((e) => Math.abs(e.error) <= 0.1).length,
    medianPct: pct(absQuantile(errors, 0.5)),
    p90Pct: pct(absQuantile(errors, 0.9)),
    maxPct: pct(absQuantile(errors, 1)),
  };
}

/**
 * A lower bound on the rows any model non-decreasing in batch misses by more than 10 %: two rows of
 * one configuration and length where the smaller batch took more than 1.1 / 0.9 × the larger's
 * time cannot both be within 10 %; a greedy matching of such pairs counts rows that must miss.
 */
export function monotoneMisses(rows: readonly ProfileRow[], kind: 'ttft' | 'tpot'): number {
  let misses = 0;
  for (const g of soloGroups(rows).values()) {
    for (const len of new Set(g.map((r) => r.inputLen))) {
      const line = g.filter((r) => r.inputLen === len).sort((a, b) => a.batchSize - b.batchSize);
      const used = new Set<number>();
      for (let i = 0; i < line.length; i++) {
        for (let j = i + 1; j < line.length && !used.has(i); j++) {
          if (used.has(j) || line[i]![kind] <= (line[j]![kind] * 1.1) / 0.9) continue;
          used.add(i).add(j);
          misses++;
        }
      }
    }
  }
  return misses;
}

/** Fits, validates and writes `latency-fit.json` under `outDir`; returns the exit status. */
export function main(outDir: string): number {
  const rows = loadReferenceProfiles('apex');
  const fits = fitAll(rows);
  const all = fits.flatMap((f) => f.rows);
  const held = holdOut(rows);
  const holdOutSummary = (h: HoldOut) => ({
    ttftBatch32From1to16: summary(h.ttftBatch),
    tpotBatch32From1to16: summary(h.tpotBatch),
    ttftPrompt512From256: summary(h.ttftPrompt),
    tpotPrompt512From256: summary(h.tpotPrompt),
  });
  const failures: string[] = [];
  for (const r of all) if (!Number.isFinite(r.predictedMs)) failures.push(`${r.model} ${r.qformat} TP${r.tp} b${r.batch} in${r.input} ${r.kind}: prediction ${r.predictedMs}`);
  for (const k of ['ttftBatch', 'tpotBatch', 'ttftPrompt', 'tpotPrompt'] as const) {
    for (const q of [0.5, 1]) {
      const grid = absQuantile(held.grid[k], q);
      const linear = absQuantile(held.linear[k], q);
      if (grid > linear) failures.push(`hold-out ${k}: the simulator's extrapolation errs ${pct(grid)} % at quantile ${q}, the linear one ${pct(linear)} %`);
    }
  }
  // What the same fits predict on an H200 (no H200 rows to check against: only HBM changes).
  const h200 = fits.map((f) => {
    const on = f.model.on(DEVICE_PEAKS['h200']!);
    return {
      config: f.key,
      decodeB1Ctx1024: { h100Ms: f.model.decodeMs(1, 1024), h200Ms: on.decodeMs(1, 1024) },
      decodeB128Ctx1024: { h100Ms: f.model.decodeMs(128, 1024), h200Ms: on.decodeMs(128, 1024) },
      prefill2048: { h100Ms: f.model.prefillMs(1, 2048), h200Ms: on.prefillMs(1, 2048) },
    };
  });
  const report = {
    source: 'reference profiles apex-cost.csv (H100), MPS 100 % rows; each row is a TTFT sample (one prefill of batch x input tokens) and a TPOT sample (one decode step at context input + output / 2)',
    model: `step = overhead + smoothmax_p(compute / (eC * peak), bytes / (eM * HBM)) + all-reduce bytes / NVLink, p = ${SMOOTH_MAX_P}; per (model, qformat, TP): prefill and decode overheads, eC, eM, least squares on relative error`,
    peaks: {
      source: 'NVIDIA H100 Tensor Core GPU datasheet (SXM5) and H200 datasheet (SXM), dense tensor-core rates',
      h100: DEVICE_PEAKS['h100'],
      h200: DEVICE_PEAKS['h200'],
      nvlinkBytesPerS: NVLINK_BYTES_PER_S,
    },
    fit: {
      ttft: summary(all.filter((r) => r.kind === 'ttft')),
      tpot: summary(all.filter((r) => r.kind === 'tpot')),
      monotoneMissesAtLeast: { ttft: monotoneMisses(rows, 'ttft'), tpot: monotoneMisses(rows, 'tpot') },
    },
    holdOut: { linear: holdOutSummary(held.linear), roofline: holdOutSummary(held.roofline), simulator: holdOutSummary(held.grid) },
    params: fits.map((f) => ({ config: f.key, ...f.params })),
    h200,
    rows: all.map((r) => ({ ...r, errorPct: pct(r.error) })),
    failures,
  };
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'latency-fit.json');
  writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
  const line = (name: string, s: ReturnType<typeof summary>): string => `${name}: ${s.rows} rows, ${s.within10} within 10 %, |error| median ${s.medianPct} %, p90 ${s.p90Pct} %, max ${s.maxPct} %`;
  console.log(line('fit TTFT', report.fit.ttft));
  console.log(line('fit TPOT', report.fit.tpot));
  console.log(`rows no model growing with batch fits within 10 %: TTFT >= ${report.fit.monotoneMissesAtLeast.ttft}, TPOT >= ${report.fit.monotoneMissesAtLeast.tpot}`);
  for (const [name, h] of Object.entries(report.holdOut)) for (const [k, s] of Object.entries(h)) console.log(line(`hold-out ${name} ${k}`, s));
  console.log(`wrote ${file}`);
  for (const f of failures) console.error(`latency-fit: ${f}`);
  return failures.length === 0 ? 0 : 1;
}
