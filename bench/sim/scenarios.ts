/**
 * The reproduction's scenarios: the paper's model mixes on 2–16 simulated H100s, Poisson arrivals,
 * Zipf popularity over a seeded ranking, ShareGPT-like or long lengths.
 * - `fig1` (2 GPUs): the paper's Figure 1, Llama-3.1-8B AWQ, FP8-KV8 and QoQ and Qwen3-32B FP16 (TP 2).
 * - `mix4` (4 GPUs): Figure 1 plus 8B FP16 and Qwen3-32B FP8-KV8.
 * - `big8` (8 GPUs): Llama-3.1-70B FP16 and FP8-KV8 (TP 4, the big-KV models that make a memory
 *   wall), Qwen3-32B FP16 and FP8-KV8, and the four 8B precisions.
 * - `big16` (16 GPUs): two distinct copies of `big8` (each its own models and popularity).
 * @module
 */
import type { DeviceSpec, ModelSpec } from '../../lib/scheduler/types.js';
import { generateWorkload, SHAREGPT_INPUT, SHAREGPT_OUTPUT, type Arrival, type LengthFit } from '../../lib/sim/workload.js';

/** Model mixes by name. */
export type MixName = 'fig1' | 'mix4' | 'big8' | 'big16';

/** Length distributions by name. */
export type LengthsName = 'sharegpt' | 'long';

/** One point of the sweep. */
export interface Scenario {
  readonly mix: MixName;
  readonly gpus: number;
  /** Total requests per second over all models. */
  readonly rate: number;
  readonly sloScale: number;
  readonly zipf: number;
  readonly lengths: LengthsName;
  readonly durationMs: number;
  readonly seed: number;
  /** kvcached-style pool's map cost per page, ms; absent: the default (8 µs). */
  readonly mapCostMs?: number;
  /**
   * Demand moves between model depths halfway: the 32-layer 8B models carry 1.75x their rate in
   * the first half and 0.25x in the second, the 64/80-layer models the reverse (same average).
   */
  readonly depthShift?: boolean;
  /**
   * Every model also gets a TPOT SLO of this many times its batch-1 decode step (the profiles'
   * mean over lengths); a request then meets its SLO only if its mean TPOT is within it too.
   */
  readonly tpotSloScale?: number;
  /**
   * Beyond the paper: one model's rate shifts halfway (uniform popularity; {@link SHIFTED_MODEL} at
   * 0.5x its share in the first half and 6x in the second). `once`: placed for the first half's
   * rates and never changed; `online`: re-placed {@link SHIFT_DETECT_MS} after the shift from the
   * rates observed since (ours: replanOnDrift; Prism: its KVPR migration), moved replicas paying
   * drain + weights load; `overlap` (ours only): the same re-placement, the new replica loading
   * while the old one drains (make-before-break).
   */
  readonly rateShift?: 'once' | 'online' | 'overlap';
}

/** The model whose rate shifts in the rateShift part: the 8B AWQ model. */
export const SHIFTED_MODEL = 'llama-3.1-8b-w4a16#0';
/** How long after the shift the re-placement looks at the new rates before acting, ms. */
export const SHIFT_DETECT_MS = 3_000;

/**
 * Lengths. `sharegpt`: the simulator's ShareGPT-like log-normal fit, p95 903 in / 631 out (the
 * LMSYS-Chat p95s the reference code plans with, notes §3.3); the medians (250 / 200) are an
 * assumption of that fit, not a published figure. `long`: a long-context, memory-bound mix,
 * prompts median 1,536 (p95 3,000, at most 3,584) and outputs median 384 (p95 1,000); an
 * assumption chosen to make KV, not compute, the limit.
 */
export const LENGTHS: Readonly<Record<LengthsName, { input: LengthFit; output: LengthFit }>> = {
  sharegpt: { input: SHAREGPT_INPUT, output: SHAREGPT_OUTPUT },
  long: { input: { median: 1536, p95: 3000, min: 256, max: 3584 }, output: { median: 384, p95: 1000, min: 16, max: 2048 } },
};

const m8 = (precision: string) => ({ family: 'llama-3.1-8b', precision });
const FIG1 = [m8('w4a16'), m8('fp8-kv8'), m8('w4a8-kv4'), { family: 'qwen-3-32b', precision: 'fp16' }];
const MIX4 = [...FIG1, m8('fp16'), { family: 'qwen-3-32b', precision: 'fp8-kv8' }];
const BIG8 = [{ family: 'llama-3.1-70b', precision: 'fp16' }, { family: 'llama-3.1-70b', precision: 'fp8-kv8' }, ...MIX4];

/** GPU count of each mix. */
export const MIX_GPUS: Readonly<Record<MixName, number>> = { fig1: 2, mix4: 4, big8: 8, big16: 16 };

/** The models of a mix, rates unset. */
export function scenarioModels(mix: MixName): ModelSpec[] {
  const sets = mix === 'fig1' ? [FIG1] : mix === 'mix4' ? [MIX4] : mix === 'big8' ? [BIG8] : [BIG8, BIG8];
  return sets.flatMap((set, copy) => set.map((m) => ({ id: `${m.family}-${m.precision}#${copy}`, ...m, rate: 0 })));
}

/** H100s, 80 GB, eight per node. */
export function scenarioDevices(gpus: number): DeviceSpec[] {
  return Array.from({ length: gpus }, (_, i) => ({ id: `h100-${i}`, memoryBytes: 80e9, speedClass: 'h100', node: Math.floor(i / 8) }));
}

/** Arrivals and the models with their expected rates set to what the workload generates. */
export function materialize(s: Scenario): { models: ModelSpec[]; devices: DeviceSpec[]; arrivals: Arrival[] } {
  const base = scenarioModels(s.mix);
  const lengths = LENGTHS[s.lengths];
  const shallow = (m: ModelSpec): boolean => m.family === 'llama-3.1-8b';
  const phases =
    s.rateShift !== undefined
      ? [
          { atMs: 0, multipliers: { [SHIFTED_MODEL]: 0.5 } },
          { atMs: s.durationMs / 2, multipliers: { [SHIFTED_MODEL]: 6 } },
        ]
      : s.depthShift === true
      ? [
          { atMs: 0, multipliers: Object.fromEntries(base.map((m) => [m.id, shallow(m) ? 1.75 : 0.25])) },
          { atMs: s.durationMs / 2, multipliers: Object.fromEntries(base.map((m) => [m.id, shallow(m) ? 0.25 : 1.75])) },
        ]
      : [];
  const arrivals = generateWorkload({ models: base.map((m) => m.id), totalRate: s.rate, zipf: s.zipf, durationMs: s.durationMs, seed: s.seed, input: lengths.input, output: lengths.output, phases });
  const counts = new Map<string, number>();
  for (const a of arrivals) counts.set(a.model, (counts.get(a.model) ?? 0) + 1);
  // Planners get the rates the workload actually has (as an operator would configure them); a
  // model that drew no request keeps a token rate so it is still placed.
  const models = base.map((m) => ({ ...m, rate: Math.max(0.01, (counts.get(m.id) ?? 0) / (s.durationMs / 1000)) }));
  return { models, devices: scenarioDevices(s.gpus), arrivals };
}
