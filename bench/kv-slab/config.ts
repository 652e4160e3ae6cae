/**
 * What the KV Slab benchmark runs: the four models, the pool, the trace shape, the sweeps, and the
 * command line that changes them.
 * @module
 */
import type { KvGeometry } from '../../lib/index.js';

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

export interface ModelDef {
  readonly name: string;
  readonly geometry: KvGeometry;
}

const LLAMA_8B = { layers: 32, kvHeads: 8, headDim: 128 } as const;
const LLAMA_70B = { layers: 80, kvHeads: 8, headDim: 128 } as const;

/**
 * Real geometries at 16 tokens per block (vLLM's default). Block bytes: 2 MiB, 1 MiB, 520 KiB and
 * 5 MiB; with 64 MiB slabs every tail is within the KV Slab's 12.5 % limit (the 70B's 4 MiB tail,
 * 6.25 %, is the largest).
 */
export const MODELS: readonly ModelDef[] = [
  { name: 'llama3.1-8b-fp16', geometry: { tokensPerBlock: 16, ...LLAMA_8B, format: 'f16' } },
  { name: 'llama3.1-8b-fp8', geometry: { tokensPerBlock: 16, ...LLAMA_8B, format: 'fp8' } },
  // FireQ-style INT4 KV: one fp8 scale per token, per head, per K or V.
  { name: 'llama3.1-8b-int4', geometry: { tokensPerBlock: 16, ...LLAMA_8B, format: 'int4', scaleBytes: 1 } },
  { name: 'llama3.1-70b-fp16', geometry: { tokensPerBlock: 16, ...LLAMA_70B, format: 'f16' } },
];

/** How the replay reclaims stranded KV Slab memory by compaction (the `kv-slab` run only). */
export interface CompactionConfig {
  /** Slabs asked for beyond the measured shortfall, so the retry does not miss by one block. */
  readonly marginSlabs: number;
  /**
   * At most this many slabs released per step: bounds the bytes one step may copy (each released
   * slab copies at most one slab's bytes). 2 measured as good as 4 or 16 here (see the sweep) at
   * half the worst step's copy.
   */
  readonly maxSlabsPerStep: number;
  /** A model is a donor only when its stranded free blocks add up to at least this many slabs. */
  readonly minDonorSlabs: number;
}

/** Copy bandwidths the compaction cost is converted at (stated, not measured, except `hostMeasured`). */
export interface CopyBandwidths {
  /** H100 device-to-device copy, effective (HBM3 3.35 TB/s peak, read + write). */
  readonly deviceBytesPerSecond: number;
  /** Host memcpy for the CPU backend. */
  readonly hostBytesPerSecond: number;
}

export interface Config {
  readonly seed: number;
  readonly quick: boolean;
  readonly poolBytes: number;
  readonly slabBytes: number;
  readonly pageBytes: number;
  readonly mapCostNs: number;
  readonly stepSeconds: number;
  readonly phases: number;
  readonly phaseSeconds: number;
  /**
   * Offered KV demand / pool bytes in every phase. At 1 a pool with no fragmentation would be
   * exactly full on average, so any loss shows up as queueing: the load where "at saturation"
   * starts. The sweep shows the others.
   */
  readonly load: number;
  /**
   * Zipf exponent of demand by popularity rank; the popular model changes every phase. At 2 the
   * popular model wants 70 % of the KV bytes and the least 4 %, then the roles rotate: demand
   * really moves between models, as in the paper's bursty multi-model traces. At 1 (48 % to 12 %)
   * every model keeps a steady floor and a static split is never far off (see zipfSweep).
   */
  readonly zipf: number;
  /** Demand share by popularity rank, from `zipf`. */
  readonly rankShares: readonly number[];
  /** A request waiting this long (since arrival or preemption) is rejected, like the engine's 30 s timeout. */
  readonly deadlineSeconds: number;
  /** Measurements start once the pool has filled. */
  readonly warmupSeconds: number;
  /** After the last arrival, requests in flight may finish for at most this long. */
  readonly drainSeconds: number;
  readonly compaction: CompactionConfig;
  readonly copyBandwidth: CopyBandwidths;
  readonly microbench: { readonly rounds: number; readonly repeats: number };
  /** Extra offered loads (KV Slab with and without compaction, and static) to run. */
  readonly sweepLoads: readonly number[];
  /** Extra slab sizes (KV Slab with and without compaction) to run. */
  readonly sweepSlabMiB: readonly number[];
  /** Other per-step compaction caps (KV Slab with compaction) to run. */
  readonly sweepCompactSlabs: readonly number[];
  /** Other Zipf exponents (KV Slab with and without compaction, and static) to run. */
  readonly sweepZipf: readonly number[];
}

/** Demand shares by popularity rank for `n` models under Zipf(s). */
export function zipfShares(n: number, s: number): number[] {
  return Array.from({ length: n }, (_, r) => 1 / Math.pow(r + 1, s));
}

/** --smoke: the whole run at a toy size (a small pool, seconds of trace), for `npm test`. */
const SMOKE: Partial<Config> = {
  poolBytes: 2 * GiB,
  phaseSeconds: 3,
  warmupSeconds: 1,
  drainSeconds: 5,
  microbench: { rounds: 5, repeats: 1 },
};

export function makeConfig(seed: number, quick: boolean, smoke = false): Config {
  const base: Config = {
    seed,
    quick,
    poolBytes: 24 * GiB,
    slabBytes: 64 * MiB,
    pageBytes: 2 * MiB,
    mapCostNs: 10_000,
    stepSeconds: 0.02,
    phases: MODELS.length,
    phaseSeconds: quick ? 30 : 60,
    load: 1.0,
    zipf: 2,
    rankShares: zipfShares(MODELS.length, 2),
    deadlineSeconds: 30,
    warmupSeconds: quick ? 10 : 20,
    drainSeconds: 60,
    compaction: { marginSlabs: 1, maxSlabsPerStep: 2, minDonorSlabs: 1 },
    copyBandwidth: { deviceBytesPerSecond: 2.5e12, hostBytesPerSecond: 10e9 },
    microbench: quick ? { rounds: 60, repeats: 5 } : { rounds: 300, repeats: 9 },
    sweepLoads: quick ? [] : [0.8, 1.2, 1.4],
    sweepSlabMiB: quick ? [] : [16, 32, 40],
    sweepCompactSlabs: quick ? [] : [4, 16],
    sweepZipf: quick ? [] : [1, 1.5],
  };
  return smoke ? { ...base, ...SMOKE, quick: true, sweepLoads: [], sweepSlabMiB: [], sweepCompactSlabs: [], sweepZipf: [] } : base;
}

export interface Args {
  readonly seed: number;
  readonly quick: boolean;
  /** A toy-size run that only checks every part works (implies quick); writes kv-slab-smoke.json. */
  readonly smoke?: boolean;
  /** The results file, instead of bench/results/kv-slab[-quick|-custom|-smoke].json. */
  readonly out?: string;
  readonly load?: number;
  readonly slabMiB?: number;
  readonly compactSlabs?: number;
  readonly zipf?: number;
  readonly only?: readonly string[];
}

export const USAGE = 'usage: kv-slab.ts [--seed N] [--quick | --smoke] [--out FILE] [--load X] [--zipf S] [--slab-mib N] [--compact-slabs N] [--only a,b]';

function positive(flag: string, value: string | undefined): number {
  const v = Number(value);
  if (!(v > 0)) throw new Error(`${flag} wants a positive number, got ${String(value)}`);
  return v;
}

export function parseArgs(argv: readonly string[]): Args {
  let only: string[] | undefined;
  let seed = 1;
  let quick = false;
  let smoke = false;
  let out: string | undefined;
  let load: number | undefined;
  let slabMiB: number | undefined;
  let compactSlabs: number | undefined;
  let zipf: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--smoke') smoke = true;
    else if (a === '--out') {
      out = argv[++i];
      if (!out) throw new Error(`--out wants a file name; ${USAGE}`);
    } else if (a === '--load') load = positive(a, argv[++i]);
    else if (a === '--zipf') zipf = positive(a, argv[++i]);
    else if (a === '--slab-mib') slabMiB = positive(a, argv[++i]);
    else if (a === '--compact-slabs') {
      compactSlabs = positive(a, argv[++i]);
      if (!Number.isInteger(compactSlabs)) throw new Error(`--compact-slabs wants an integer, got ${argv[i]}`);
    } else if (a === '--only') only = String(argv[++i]).split(',');
    else if (a === '--seed') {
      seed = Number(argv[++i]);
      if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`--seed wants an integer from 0 to 2^32-1, got ${argv[i]}`);
    } else throw new Error(`unknown argument ${String(a)}; ${USAGE}`);
  }
  return {
    seed,
    quick: quick || smoke,
    ...(smoke ? { smoke } : {}),
    ...(out === undefined ? {} : { out }),
    ...(load === undefined ? {} : { load }),
    ...(slabMiB === undefined ? {} : { slabMiB }),
    ...(compactSlabs === undefined ? {} : { compactSlabs }),
    ...(zipf === undefined ? {} : { zipf }),
    ...(only === undefined ? {} : { only }),
  };
}

/** The run's configuration: the defaults with the command line's changes. */
export function configFor(args: Args): Config {
  const base = makeConfig(args.seed, args.quick, args.smoke);
  return {
    ...base,
    load: args.load ?? base.load,
    ...(args.zipf === undefined ? {} : { zipf: args.zipf, rankShares: zipfShares(MODELS.length, args.zipf) }),
    slabBytes: args.slabMiB === undefined ? base.slabBytes : args.slabMiB * MiB,
    compaction: args.compactSlabs === undefined ? base.compaction : { ...base.compaction, maxSlabsPerStep: args.compactSlabs },
  };
}

/** A run that changes the reference configuration writes elsewhere, never over the reference results. */
export function isCustom(args: Args): boolean {
  return args.load !== undefined || args.zipf !== undefined || args.slabMiB !== undefined || args.compactSlabs !== undefined || args.only !== undefined;
}
