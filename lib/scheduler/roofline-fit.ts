/**
 * Fitting the roofline (lib/scheduler/roofline.ts) to profile rows by least squares on relative
 * error, and measuring it: per-row error on the rows it was fitted on, and the error past the grid
 * by holding its edge out (batch 32 from 1–16, prompt 512 from 256), beside the profile's own
 * linear extrapolation held out the same way.
 * @module
 */
import { familyInfo, kvBytesPerToken, PRECISIONS, weightBytes } from './catalog.js';
import { PlanError } from './errors.js';
import { DEVICE_PEAKS, type DevicePeaks } from './interference.js';
import { GridRooflineLatencyModel } from './grid-roofline-latency.js';
import { ProfileLatencyModel, type IterationShape } from './latency-model.js';
import type { ProfileRow } from './profiles.js';
import { rooflineMs, RooflineLatencyModel, stepTimes, type RooflineConfig, type RooflineParams, type StepTimes } from './roofline.js';

/** The roofline configuration of a profile's (model, qformat, tp) (QoQ's `llama-3-8b` is the 8B shape). */
export function rooflineConfig(model: string, qformat: string, tp: number): RooflineConfig {
  const shape = familyInfo(model === 'llama-3-8b' ? 'llama-3.1-8b' : model, 'profile', 'model');
  const precision = Object.values(PRECISIONS).find((p) => p.qformat === qformat);
  if (precision === undefined) throw new PlanError('ERR_PLAN_INPUT', 'profile', 'qformat', `no precision with qformat "${qformat}"`);
  return { shape, precision, tp, weightBytes: weightBytes(shape, precision), kvBytesPerToken: kvBytesPerToken(shape, precision.kv) };
}

/** One profile row as the two steps it measures: its TTFT (one prefill) and its TPOT (one decode). */
export interface FitSample {
  readonly row: ProfileRow;
  readonly kind: 'ttft' | 'tpot';
  readonly shape: IterationShape;
  readonly measuredMs: number;
}

/** The samples of profile rows (the decode context is the mean over the profiled output, as the profile model takes it). */
export function fitSamples(rows: readonly ProfileRow[]): FitSample[] {
  const out: FitSample[] = [];
  for (const r of rows) {
    out.push({ row: r, kind: 'ttft', shape: { prefillSeqs: r.batchSize, prefillTokens: r.batchSize * r.inputLen, decodeSeqs: 0, decodeContext: 0 }, measuredMs: r.ttft * 1000 });
    out.push({ row: r, kind: 'tpot', shape: { prefillSeqs: 0, prefillTokens: 0, decodeSeqs: r.batchSize, decodeContext: r.inputLen + r.outputLen / 2 }, measuredMs: r.tpot * 1000 });
  }
  return out;
}

// Overhead minimising Σ ((o + g − y) / y)² over samples, at least 0: a weighted mean of y − g.
function bestOverhead(g: readonly number[], y: readonly number[]): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < g.length; i++) {
    num += (y[i]! - g[i]!) / (y[i]! * y[i]!);
    den += 1 / (y[i]! * y[i]!);
  }
  return den > 0 ? Math.max(0, num / den) : 0;
}

/**
 * Least-squares fit of one configuration's four parameters to its rows (solo, MPS 100 %):
 * efficiencies over a log grid in [0.02, 1] then refined by a shrinking pattern search, the two
 * overheads in closed form at each point.
 */
export function fitRoofline(config: RooflineConfig, rows: readonly ProfileRow[], peaks: DevicePeaks = DEVICE_PEAKS['h100']!): RooflineParams {
  const samples = fitSamples(rows);
  if (samples.length === 0) throw new PlanError('ERR_PROFILE_MISSING', 'profile', 'rows', 'no rows to fit the roofline to');
  const times: StepTimes[] = samples.map((s) => stepTimes(config, s.shape, peaks));
  const pre = samples.map((s, i) => [s, i] as const).filter(([s]) => s.kind === 'ttft').map(([, i]) => i);
  const dec = samples.map((s, i) => [s, i] as const).filter(([s]) => s.kind === 'tpot').map(([, i]) => i);
  const y = samples.map((s) => s.measuredMs);
  const evaluate = (computeEff: number, memoryEff: number): { params: RooflineParams; loss: number } => {
    const eff = { prefillOverheadMs: 0, decodeOverheadMs: 0, computeEff, memoryEff };
    const g = times.map((t) => rooflineMs(t, 0, eff));
    const oP = bestOverhead(pre.map((i) => g[i]!), pre.map((i) => y[i]!));
    const oD = bestOverhead(dec.map((i) => g[i]!), dec.map((i) => y[i]!));
    let loss = 0;
    for (let i = 0; i < g.length; i++) {
      const o = samples[i]!.kind === 'ttft' ? oP : oD;
      const e = (o + g[i]! - y[i]!) / y[i]!;
      loss += e * e;
    }
    return { params: { prefillOverheadMs: oP, decodeOverheadMs: oD, computeEff, memoryEff }, loss };
  };
  const lo = Math.log(0.02);
  let best = evaluate(1, 1);
  const n = 40;
  for (let i = 0; i <= n; i++) {
    for (let j = 0; j <= n; j++) {
      const cand = evaluate(Math.exp(lo - (lo * i) / n), Math.exp(lo - (lo * j) / n));
      if (cand.loss < best.loss) best = cand;
    }
  }
  let step = 0.05;
  while (step > 1e-4) {
    let moved = false;
    for (const [dc, dm] of [[1, 0], [-1, 0], [0, 1], [0, -1]] as const) {
      const c = Math.min(1, best.params.computeEff * Math.exp(dc * step));
      const m = Math.min(1, best.params.memoryEff * Math.exp(dm * step));
      const cand = evaluate(c, m);
      if (cand.loss < best.loss - 1e-15) {
        best = cand;
        moved = true;
      }
    }
    if (!moved) step /= 2;
  }
  return best.params;
}

/** One fitted sample: measured, predicted, signed relative error. */
export interface FitRowError {
  readonly model: string;
  readonly qformat: string;
  readonly tp: number;
  readonly batch: number;
  readonly input: number;
  readonly kind: 'ttft' | 'tpot';
  readonly measuredMs: number;
  readonly predictedMs: number;
  readonly error: number;
}

/** A configuration's fit and its error on every row it was fitted on. */
export interface ConfigFit {
  readonly key: string;
  readonly params: RooflineParams;
  readonly model: RooflineLatencyModel;
  readonly rows: readonly FitRowError[];
}

/** Solo (MPS 100 %) rows grouped per `model|qformat|tp`. */
export function soloGroups(rows: readonly ProfileRow[]): Map<string, ProfileRow[]> {
  const groups = new Map<string, ProfileRow[]>();
  for (const r of rows) {
    if (r.mpsPercentage !== 100) continue;
    const key = `${r.model}|${r.qformat}|${r.tp}`;
    let g = groups.get(key);
    if (g === undefined) groups.set(key, (g = []));
    g.push(r);
  }
  return groups;
}

/** Fits every solo configuration of `rows` and reports each row's error. */
export function fitAll(rows: readonly ProfileRow[]): ConfigFit[] {
  const out: ConfigFit[] = [];
  for (const [key, g] of soloGroups(rows)) {
    const r0 = g[0]!;
    const config = rooflineConfig(r0.model, r0.qformat, r0.tp);
    const params = fitRoofline(config, g);
    const model = new RooflineLatencyModel(config, params);
    out.push({ key, params, model, rows: fitSamples(g).map((s) => rowError(s, predict(model, s))) });
  }
  return out;
}

function predict(m: { prefillMs(b: number, t: number): number; decodeMs(b: number, c: number): number }, s: FitSample): number {
  return s.kind === 'ttft' ? m.prefillMs(s.shape.prefillSeqs, s.shape.prefillTokens) : m.decodeMs(s.shape.decodeSeqs, s.shape.decodeContext);
}

function rowError(s: FitSample, predictedMs: number): FitRowError {
  const r = s.row;
  return { model: r.model, qformat: r.qformat, tp: r.tp, batch: r.batchSize, input: r.inputLen, kind: s.kind, measuredMs: s.measuredMs, predictedMs, error: predictedMs / s.measuredMs - 1 };
}

/** Held-out errors of one extrapolation, per kind of hold-out. */
export interface HoldOut {
  /** TTFT at batch 32 from batches 1–16. */
  readonly ttftBatch: readonly FitRowError[];
  /** TPOT at batch 32 from batches 1–16. */
  readonly tpotBatch: readonly FitRowError[];
  /** TTFT at prompt 512 from prompt 256 (configurations profiled at both). */
  readonly ttftPrompt: readonly FitRowError[];
  /** TPOT at prompt 512 from prompt 256. */
  readonly tpotPrompt: readonly FitRowError[];
}

/** The extrapolations compared: the profile's straight lines, the roofline alone, and the simulator's profile-inside-roofline-outside. */
export type Extrapolation = 'linear' | 'roofline' | 'grid';

/**
 * Holds the grid's edge out and predicts it from what is left: the profile model's linear
 * extrapolation, the roofline fitted on the rest, and the two combined as the simulator charges
 * steps (lib/scheduler/grid-roofline-latency.ts).
 */
export function holdOut(rows: readonly ProfileRow[]): Record<Extrapolation, HoldOut> {
  const acc = { roofline: newHoldOut(), linear: newHoldOut(), grid: newHoldOut() };
  for (const [key, g] of soloGroups(rows)) {
    const r0 = g[0]!;
    const config = rooflineConfig(r0.model, r0.qformat, r0.tp);
    const run = (keep: (r: ProfileRow) => boolean, test: (r: ProfileRow) => boolean, ttft: keyof HoldOut, tpot: keyof HoldOut): void => {
      const train = g.filter(keep);
      const held = fitSamples(g.filter(test));
      if (train.length === 0 || held.length === 0) return;
      const roof = new RooflineLatencyModel(config, fitRoofline(config, train));
      const lin = new ProfileLatencyModel(train, key);
      const grid = new GridRooflineLatencyModel(lin, roof);
      for (const s of held) {
        const dest = s.kind === 'ttft' ? ttft : tpot;
        acc.roofline[dest].push(rowError(s, predict(roof, s)));
        acc.linear[dest].push(rowError(s, predict(lin, s)));
        acc.grid[dest].push(rowError(s, predict(grid, s)));
      }
    };
    run((r) => r.batchSize <= 16, (r) => r.batchSize === 32, 'ttftBatch', 'tpotBatch');
    if (new Set(g.map((r) => r.inputLen)).size > 1) run((r) => r.inputLen === 256, (r) => r.inputLen === 512, 'ttftPrompt', 'tpotPrompt');
  }
  return acc;
}

function newHoldOut(): { ttftBatch: FitRowError[]; tpotBatch: FitRowError[]; ttftPrompt: FitRowError[]; tpotPrompt: FitRowError[] } {
  return { ttftBatch: [], tpotBatch: [], ttftPrompt: [], tpotPrompt: [] };
}

/** Quantile of |error| (nearest rank). */
export function absQuantile(errors: readonly FitRowError[], q: number): number {
  const s = errors.map((e) => Math.abs(e.error)).sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}
