/**
 * The cost model per (model, precision, device): TTFT as a function of batch and prompt tokens,
 * TPOT as a function of batch and context (both through {@link ProfileLatencyModel}), weight and
 * KV bytes, and the slowdown co-located models inflict on each other. Calibrated from the
 * reference H100 profiles, or from our engine's own through `fineserve profile`.
 * @module
 */
import { upperMedian } from '../stats.js';
import {
  PRECISIONS,
  activationBytes,
  familyInfo,
  kvBytesPerToken,
  precisionInfo,
  profileModelName,
  weightBytes,
  type ModelShapeInfo,
  type PrecisionInfo,
} from './catalog.js';
import { PlanError } from './errors.js';
import { contendedSlowdown, DEVICE_PEAKS, stepDemand, type StepDemand } from './interference.js';
import { GridRooflineLatencyModel } from './grid-roofline-latency.js';
import { interpolate, iterationMs, ProfileLatencyModel, type IterationShape, type LatencyModel } from './latency-model.js';
import { loadReferenceProfiles, selectRows, type ProfileRow, type ReferenceProfileSet } from './profiles.js';
import { RooflineLatencyModel, type RooflineConfig } from './roofline.js';
import { fitRoofline, rooflineConfig } from './roofline-fit.js';

/** Everything the planner and simulator need about one model at one precision and TP degree. */
export interface CostEntry {
  readonly family: string;
  readonly precision: PrecisionInfo;
  readonly shape: ModelShapeInfo;
  readonly tp: number;
  /** Solo latency at MPS 100 % (the whole device), per TP group: what planners and policies estimate with. */
  readonly latency: ProfileLatencyModel;
  /**
   * What a step takes, as the simulator charges it: the profile inside its grid, the roofline
   * fitted to it outside (lib/scheduler/grid-roofline-latency.ts); the profile alone with
   * `extrapolation: 'linear'` or where the roofline does not know the model or precision.
   */
  readonly stepLatency: LatencyModel;
  /** Whole model; each device of the TP group holds weightBytes / tp. */
  readonly weightBytes: number;
  /** Per replica; each device holds activationBytes / tp, as the reference budgets it. */
  readonly activationBytes: number;
  /** All layers, K and V, whole model (each device holds 1/tp). */
  readonly kvBytesPerToken: number;
  readonly tokensPerBlock: number;
}

/** Options of {@link CostModel}. */
export interface CostModelOptions {
  /**
   * Decode is bandwidth bound: with k models decoding at once each step takes about
   * max(1, k × this) of its solo time. Default 0.6: 8B FP16 decode streams its weights at about
   * 60 % of H100 bandwidth (16 GB in 8 ms of 3.35 TB/s). Not in the profiles; an assumption.
   */
  readonly decodeBandwidthShare?: number;
  /**
   * How steps past the profiled grid are timed (CostEntry.stepLatency): `roofline` (default) by
   * the roofline fitted to the profile, `linear` by the profile's straight lines.
   */
  readonly extrapolation?: 'roofline' | 'linear';
}

/** Calibrated costs of every profiled configuration. */
export class CostModel {
  readonly rows: readonly ProfileRow[];
  readonly #entries = new Map<string, ProfileLatencyModel>();
  readonly #mpsShares: number[];
  readonly #mpsSlowdown: number[];
  readonly #decodeShare: number;
  readonly #extrapolation: 'roofline' | 'linear';
  readonly #stepLatency = new Map<string, LatencyModel>();
  readonly #computeScale = new Map<string, number>();
  #computeScaleAll: number | undefined;

  constructor(rows: readonly ProfileRow[], options: CostModelOptions = {}) {
    this.rows = rows;
    this.#decodeShare = options.decodeBandwidthShare ?? 0.6;
    this.#extrapolation = options.extrapolation ?? 'roofline';
    const groups = new Map<string, ProfileRow[]>();
    for (const r of rows) {
      const key = `${r.model}|${r.qformat}|${r.tp}|${r.mpsPercentage}`;
      let g = groups.get(key);
      if (g === undefined) groups.set(key, (g = []));
      g.push(r);
    }
    for (const [key, g] of groups) this.#entries.set(key, new ProfileLatencyModel(g, key));
    [this.#mpsShares, this.#mpsSlowdown] = mpsSlowdownTable(rows);
  }

  /** The cost model of the reference H100 profiles (`apex`: the authors' cluster, MPS 20–100 %). */
  static reference(set: ReferenceProfileSet = 'apex'): CostModel {
    return new CostModel(loadReferenceProfiles(set));
  }

  /** The raw latency model of one profiled configuration, if any. */
  profile(model: string, qformat: string, tp: number, mps = 100): ProfileLatencyModel | undefined {
    return this.#entries.get(`${model}|${qformat}|${tp}|${mps}`);
  }

  /** TP degrees profiled for a family at a precision, ascending. */
  tpOptions(family: string, precision: string): number[] {
    const p = precisionInfo(precision);
    const name = profileModelName(family, p.qformat);
    const tps = new Set<number>();
    for (const r of this.rows) if (r.model === name && r.qformat === p.qformat && r.mpsPercentage === 100) tps.add(r.tp);
    return [...tps].sort((a, b) => a - b);
  }

  /** Costs of (family, precision, tp); throws `ERR_PLAN_INPUT` naming what has no profile. */
  entry(family: string, precision: string, tp: number, source = 'model'): CostEntry {
    const shape = familyInfo(family, source);
    const p = precisionInfo(precision, source);
    const name = profileModelName(family, p.qformat);
    const latency = this.profile(name, p.qformat, tp);
    if (latency === undefined) {
      const tps = this.tpOptions(family, precision);
      throw new PlanError(
        'ERR_PLAN_INPUT',
        source,
        'precision',
        `no profile for ${family} ${precision} (${p.qformat}) at TP ${tp}` + (tps.length > 0 ? `; profiled TP: ${tps.join(', ')}` : '; none at any TP'),
      );
    }
    return {
      family,
      precision: p,
      shape,
      tp,
      latency,
      stepLatency: this.#stepLatencyOf(name, p.qformat, tp, latency),
      weightBytes: weightBytes(shape, p),
      activationBytes: activationBytes(p),
      kvBytesPerToken: kvBytesPerToken(shape, p.kv),
      tokensPerBlock: p.tokensPerBlock,
    };
  }

  /**
   * How much slower one model's step runs while `k` models (itself included) are active on the
   * device. Prefill is compute bound: MPS gives each about 1/k of the SMs, and the profiles
   * measure TTFT at MPS shares 20–100 %, so its part is the median TTFT ratio at share 100/k.
   * Decode is bandwidth bound: see {@link CostModelOptions.decodeBandwidthShare}.
   * `prefillFraction` is the share of the step's solo time spent in prefill.
   */
  colocationSlowdown(k: number, prefillFraction: number): number {
    if (k <= 1) return 1;
    const share = 100 / k;
    const prefill = this.#mpsShares.length === 0 ? k : Math.max(1, interpolate(this.#mpsShares, this.#mpsSlowdown, share));
    const decode = Math.max(1, k * this.#decodeShare);
    return prefillFraction * prefill + (1 - prefillFraction) * decode;
  }

  /**
   * A step's demand on the device (see lib/scheduler/interference.ts), its compute share scaled
   * by how much of the device the profiles show this configuration's prefill occupies: under MPS
   * share s a prefill that needs c of the SMs slows by c / s, so each profiled TTFT(s)/TTFT(100)
   * above 1.05 gives c = s × ratio; the median of c over the FLOP-derived share is the scale
   * (kernels hold SMs they do not keep busy). Configurations without MPS rows use the median scale.
   */
  stepDemand(entry: CostEntry, shape: IterationShape, soloMs = iterationMs(entry.latency, shape)): StepDemand {
    const d = stepDemand(entry, shape, soloMs, DEVICE_PEAKS['h100']);
    return { compute: Math.min(1, d.compute * this.#occupancyScale(entry)), memory: d.memory };
  }

  /** Slowdown of a step with demand `self` while `others` run beside it on a device. */
  contendedSlowdown(self: StepDemand, others: readonly StepDemand[]): number {
    return contendedSlowdown(self, others);
  }

  // Fitted once per configuration (a few ms each).
  #stepLatencyOf(model: string, qformat: string, tp: number, profile: ProfileLatencyModel): LatencyModel {
    if (this.#extrapolation === 'linear') return profile;
    const key = `${model}|${qformat}|${tp}`;
    let m = this.#stepLatency.get(key);
    if (m === undefined) {
      const config = knownRooflineConfig(model, qformat, tp);
      m = config === undefined ? profile : new GridRooflineLatencyModel(profile, new RooflineLatencyModel(config, fitRoofline(config, selectRows(this.rows, model, qformat, tp))));
      this.#stepLatency.set(key, m);
    }
    return m;
  }

  #occupancyScale(entry: CostEntry): number {
    const key = `${profileModelName(entry.family, entry.precision.qformat)}|${entry.precision.qformat}|${entry.tp}`;
    const cached = this.#computeScale.get(key);
    if (cached !== undefined) return cached;
    const own = this.#scalesOf(key, entry);
    if (own.length === 0) {
      this.#computeScaleAll ??= upperMedian(this.#allScales());
      return this.#computeScaleAll;
    }
    const scale = upperMedian(own);
    this.#computeScale.set(key, scale);
    return scale;
  }

  #scalesOf(key: string, entry: CostEntry): number[] {
    const solo = new Map<string, number>();
    const rowKey = (r: ProfileRow): string => `${r.model}|${r.qformat}|${r.tp}`;
    for (const r of this.rows) if (r.mpsPercentage === 100 && rowKey(r) === key) solo.set(`${r.batchSize}|${r.inputLen}`, r.ttft);
    const out: number[] = [];
    for (const r of this.rows) {
      if (r.mpsPercentage === 100 || rowKey(r) !== key) continue;
      const base = solo.get(`${r.batchSize}|${r.inputLen}`);
      if (base === undefined || r.ttft / base < 1.05) continue;
      const shape = { prefillSeqs: r.batchSize, prefillTokens: r.batchSize * r.inputLen, decodeSeqs: 0, decodeContext: 0 };
      const flopShare = stepDemand(entry, shape, base * 1000, DEVICE_PEAKS['h100']).compute;
      if (flopShare > 0) out.push(((r.mpsPercentage / 100) * (r.ttft / base)) / flopShare);
    }
    return out;
  }

  #allScales(): number[] {
    const out: number[] = [];
    const seen = new Set<string>();
    for (const r of this.rows) {
      const key = `${r.model}|${r.qformat}|${r.tp}`;
      if (seen.has(key) || r.mpsPercentage === 100) continue;
      seen.add(key);
      const family = r.model === 'llama-3-8b' ? 'llama-3.1-8b' : r.model;
      const precision = Object.values(PRECISIONS).find((p) => p.qformat === r.qformat)?.name;
      if (precision === undefined || this.profile(r.model, r.qformat, r.tp) === undefined) continue;
      out.push(...this.#scalesOf(key, this.entry(family, precision, r.tp)));
    }
    return out.length > 0 ? out : [1];
  }
}

// Our engine's own profiles (`fineserve profile`) name formats and models the roofline does not know.
function knownRooflineConfig(model: string, qformat: string, tp: number): RooflineConfig | undefined {
  try {
    return rooflineConfig(model, qformat, tp);
  } catch {
    return undefined;
  }
}

// Median TTFT(mps) / TTFT(100) over every configuration profiled at both, per MPS share.
function mpsSlowdownTable(rows: readonly ProfileRow[]): [number[], number[]] {
  const solo = new Map<string, number>();
  const key = (r: ProfileRow): string => `${r.model}|${r.qformat}|${r.tp}|${r.batchSize}|${r.inputLen}`;
  for (const r of rows) if (r.mpsPercentage === 100) solo.set(key(r), r.ttft);
  const ratios = new Map<number, number[]>();
  for (const r of rows) {
    if (r.mpsPercentage === 100) continue;
    const base = solo.get(key(r));
    if (base === undefined) continue;
    let list = ratios.get(r.mpsPercentage);
    if (list === undefined) ratios.set(r.mpsPercentage, (list = []));
    list.push(r.ttft / base);
  }
  const shares = [...ratios.keys()].sort((a, b) => a - b);
  const medians = shares.map((s) => upperMedian(ratios.get(s)!));
  if (shares.length > 0) {
    shares.push(100);
    medians.push(1);
  }
  return [shares, medians];
}
