/**
 * Aggregation of bench:sim runs: mean ± standard deviation over seeds per (system, x), the rate
 * each system sustains at 90 % and 99 % attainment (per seed, then median and range), and ours
 * over every baseline per rate. A run whose planner could not place every model counts as
 * rejected: attainment and throughput 0 for it (what an operator would get: no deployment).
 * @module
 */
import type { SystemName } from '../../lib/sim/systems.js';
import type { RunSummary } from './run-one.js';

/** Mean and spread over seeds. */
export interface Stat {
  readonly mean: number;
  readonly sd: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

export function stat(xs: readonly number[]): Stat {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / Math.max(n, 1);
  const sd = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, min: Math.min(...xs), max: Math.max(...xs), n };
}

/** Attainment as deployed: 0 for a rejected plan. */
export const deployedAttainment = (r: RunSummary): number => (r.feasible ? r.sloAttainment : 0);
/** Throughput as deployed: 0 for a rejected plan. */
export const deployedThroughput = (r: RunSummary): number => (r.feasible ? r.tokenThroughput : 0);

/** One point of a curve. */
export interface CurvePoint {
  readonly x: number;
  readonly attainment: Stat;
  readonly throughput: Stat;
  /** Share of seeds whose plan was rejected. */
  readonly rejected: number;
  /** Attainment simulated as if a rejected plan had run anyway. */
  readonly attainmentIfRun: Stat;
  readonly extrapolatedShare: number;
}

/** Curve of one system over `x` (rate or SLO scale) among `runs`. */
export function curve(runs: readonly RunSummary[], system: SystemName, x: (r: RunSummary) => number): CurvePoint[] {
  const mine = runs.filter((r) => r.system === system);
  const xs = [...new Set(mine.map(x))].sort((a, b) => a - b);
  return xs.map((v) => {
    const at = mine.filter((r) => x(r) === v);
    return {
      x: v,
      attainment: stat(at.map(deployedAttainment)),
      throughput: stat(at.map(deployedThroughput)),
      rejected: at.filter((r) => !r.feasible).length / at.length,
      attainmentIfRun: stat(at.map((r) => r.sloAttainment)),
      extrapolatedShare: at.reduce((a, r) => a + r.extrapolatedShare, 0) / at.length,
    };
  });
}

/** Highest rate at which attainment stays ≥ target at it and every lower swept rate, interpolated. */
export function sustainedRate(points: readonly (readonly [number, number])[], target: number): number {
  const pts = [...points].sort((a, b) => a[0] - b[0]);
  let last = 0;
  for (let i = 0; i < pts.length; i++) {
    const [x, y] = pts[i]!;
    if (y >= target) {
      last = x;
      continue;
    }
    if (i > 0) {
      const [xp, yp] = pts[i - 1]!;
      if (yp >= target) last = xp + ((x - xp) * (yp - target)) / (yp - y);
    }
    break;
  }
  return last;
}

/** Sustained rate per seed, then its median and range over seeds. */
export function sustained(runs: readonly RunSummary[], system: SystemName, target: number): { median: number; min: number; max: number } {
  const mine = runs.filter((r) => r.system === system);
  const perSeed = [...new Set(mine.map((r) => r.seed))].map((seed) => sustainedRate(mine.filter((r) => r.seed === seed).map((r) => [r.rate, deployedAttainment(r)] as const), target));
  perSeed.sort((a, b) => a - b);
  return { median: perSeed[Math.floor((perSeed.length - 1) / 2)] ?? 0, min: perSeed[0] ?? 0, max: perSeed.at(-1) ?? 0 };
}

/** Ours over one baseline at each rate: ratio of means (null where the baseline's mean is 0). */
export function ratios(ours: readonly CurvePoint[], base: readonly CurvePoint[]): { x: number; attainment: number | null; throughput: number | null }[] {
  return ours.map((p) => {
    const b = base.find((q) => q.x === p.x);
    const r = (a: number, c: number | undefined): number | null => (c !== undefined && c > 0 ? a / c : null);
    return { x: p.x, attainment: r(p.attainment.mean, b?.attainment.mean), throughput: r(p.throughput.mean, b?.throughput.mean) };
  });
}
