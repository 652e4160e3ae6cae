/**
 * Command line and fixed settings of the CPU engine benchmark.
 * @module
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { MODEL_SHAPES, type ModelShape as GeneratorShape } from '../../lib/generate.js';
import { GGUF_QUANT_TYPES, type GgufQuantType } from '../../lib/quantize.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const STORIES_GGUF = fileURLToPath(new URL('../../../shared/fixtures/stories260K/stories260K.gguf', import.meta.url));
/** The ~100M random-weight Llama (F16 matrices), generated once and reused. */
export const LLAMA_100M_GGUF = `${ROOT}.cache/models/llama-100m-f16.gguf`;
export const RESULTS = `${ROOT}bench/results/engine-cpu.json`;

/** The quantized files, written from the F16 one by fineserve's GGUF writer at each run. */
export const llama100mQuantGguf = (type: 'q8_0' | 'q4_0' | 'q4_k_m'): string => `${ROOT}.cache/models/llama-100m-${type}.gguf`;

export type ModelKey = 'stories260K' | 'llama-100m-f16' | 'llama-100m-q8_0' | 'llama-100m-q4_0' | 'llama-100m-q4_k_m';
export const MODEL_KEYS: readonly ModelKey[] = ['stories260K', 'llama-100m-f16', 'llama-100m-q8_0', 'llama-100m-q4_0', 'llama-100m-q4_k_m'];

/** Weight types a generated shape is benched in: F16 as generated, the others written from it by quantizeGguf. */
export type WeightType = 'f16' | GgufQuantType;
export const WEIGHT_TYPES: readonly WeightType[] = ['f16', ...GGUF_QUANT_TYPES];

/**
 * What one results key benches: a GGUF already on disk (the stories260K fixture, a --gguf file),
 * or a generator shape in one weight type (llama-100m-*, --shape), generated on first use.
 */
export type ModelSpec =
  | { readonly kind: 'file'; readonly key: string; readonly path: string; readonly origin: 'fixture' | '--gguf' }
  | {
      readonly kind: 'generated';
      readonly key: string;
      /** The file benched; for f16 the generated one, else written from it each run. */
      readonly path: string;
      /** The F16 file generated once (seed 0) and kept. */
      readonly f16Path: string;
      readonly shape: GeneratorShape;
      readonly layers: number | undefined;
      readonly vocab: number | undefined;
      readonly type: WeightType;
    };

/**
 * A generator shape in one weight type. Key and file name carry the overrides (tiny-l1-v64-q8_0),
 * so a changed --layers never reuses another size's cached file; without overrides llama-100m's
 * files are the fixed keys' own.
 */
export function shapeModel(shape: GeneratorShape, type: WeightType, layers?: number, vocab?: number, dir = `${ROOT}.cache/models`): ModelSpec {
  const base = `${shape}${layers === undefined ? '' : `-l${layers}`}${vocab === undefined ? '' : `-v${vocab}`}`;
  return { kind: 'generated', key: `${base}-${type}`, path: `${dir}/${base}-${type}.gguf`, f16Path: `${dir}/${base}-f16.gguf`, shape, layers, vocab, type };
}

/** A fixed key: the fixture, or llama-100m in one type. */
function fixedModel(key: ModelKey): ModelSpec {
  if (key === 'stories260K') return { kind: 'file', key, path: STORIES_GGUF, origin: 'fixture' };
  return shapeModel('llama-100m', key.slice('llama-100m-'.length) as WeightType);
}

/** A GGUF file given on the command line, keyed by its file name without .gguf. */
function ggufModel(path: string): ModelSpec {
  const full = resolve(path);
  if (!existsSync(full) || !statSync(full).isFile()) throw new Error(`--gguf ${path}: no such file (${full})`);
  // Without this, a non-GGUF file would reach Model.load, which reads any other path as a HF folder.
  const magic = Buffer.alloc(4);
  const fd = openSync(full, 'r');
  try {
    readSync(fd, magic, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  if (magic.toString('latin1') !== 'GGUF') throw new Error(`--gguf ${path}: not a GGUF file (its first bytes are not "GGUF")`);
  return { kind: 'file', key: basename(full).replace(/\.gguf$/i, ''), path: full, origin: '--gguf' };
}

export type Against = 'peer' | 'kernels' | 'none';

export interface BenchConfig {
  readonly threads: number;
  /** Timed repetitions per measurement (median taken); undefined: per model default. */
  readonly reps: number | undefined;
  readonly kvFormat: 'f32' | 'f16';
  readonly models: readonly ModelSpec[];
  /** Prompt tokens of the prefill measurements (each capped by the model's context). */
  readonly prefillTokens: readonly number[];
  /** Prompt tokens of each sequence in the decode measurements. */
  readonly decodePromptTokens: number;
  /** Generated tokens per sequence in the decode measurements. */
  readonly decodeTokens: number;
  /** Concurrent sequences of the decode measurements (1: single-stream). */
  readonly concurrency: readonly number[];
  /**
   * What fineserve is compared with: node-llama-cpp, or fineserve's own per-row kernels that the
   * GEMM replaced (FINESERVE_GEMM=0, same process), or nothing (--smoke).
   */
  readonly against: Against;
  readonly out: string;
  /** A toy run of fineserve alone (no peer): stories260K (or the --gguf/--shape models), 1 thread, a few tokens, for npm test. */
  readonly smoke: boolean;
  /** Before each measurement, wait up to this many seconds for other processes to go quiet. */
  readonly waitQuiet: number;
}

const USAGE = `usage: node --import tsx bench/engine-cpu.ts [options]
  --threads N        threads for both engines (default: os.availableParallelism() = ${availableParallelism()})
  --reps N           timed repetitions per measurement, median taken (default: 5 for stories260K, 3 for llama-100m)
  --kv f16|f32       KV cache format for both engines (default f16, node-llama-cpp's default)
  --models a,b       ${MODEL_KEYS.join(',')} (default all, or none when
                     --gguf or --shape is given)
  --gguf F[,F...]    also bench these GGUF files, each under its file name without .gguf
  --shape S[,S...]   also bench these generator shapes (${MODEL_SHAPES.join(', ')}),
                     generated once (F16, seed 0) into .cache/models/ as <shape>[-l<N>][-v<N>]-<type>.gguf
    --layers N       transformer blocks of the --shape models (default: the shape's own)
    --vocab N        vocabulary of the --shape models (at least 8; default: the shape's own)
    --types a,b      weight types of the --shape models: ${WEIGHT_TYPES.join(',')} (default f16);
                     the quantized ones rewritten from the F16 file by quantizeGguf each run
    --models-dir D   where the --shape models are generated (default .cache/models)
  --prompts a,b      prefill prompt lengths (default 32,256,1024; capped by the model's context)
  --batch a,b        concurrent sequences of the decode measurements (default 1,8,32)
  --against peer|kernels
                     compare with node-llama-cpp (default), or with fineserve's per-row kernels
                     of before the GEMM (FINESERVE_GEMM=0) in the same process
  --wait-quiet S     before each measurement, wait up to S seconds until other processes leave
                     the benchmark's threads their cores (0.25 core of noise allowed), and redo (twice at most) one they disturbed (default 0:
                     measure at once, once; the other processes' load is recorded either way)
  --quick            1 rep, 32 decode tokens: a short run (results to engine-cpu-quick.json)
  --smoke            fineserve alone (no node-llama-cpp, nothing installed), stories260K (or only the
                     --gguf/--shape models; --models ignored), 1 thread, 1 rep, a few tokens: checks
                     the benchmark runs (results to build/engine-cpu-smoke.json)
  --out FILE         results file (default bench/results/engine-cpu.json at the default thread
                     count, engine-cpu-<N>t.json at another)`;

export function parseArgs(argv: readonly string[]): BenchConfig {
  let threads = availableParallelism();
  let reps: number | undefined;
  let kvFormat: 'f32' | 'f16' = 'f16';
  let models: ModelKey[] | undefined;
  const ggufs: string[] = [];
  const shapes: GeneratorShape[] = [];
  let layers: number | undefined;
  let vocab: number | undefined;
  let types: WeightType[] | undefined;
  let modelsDir = `${ROOT}.cache/models`;
  let quick = false;
  let smoke = false;
  let out: string | undefined;
  let waitQuiet = 0;
  let prompts = [32, 256, 1024];
  let batch = [1, 8, 32];
  let against: Against = 'peer';
  const positive = (flag: string, value: string | undefined): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a positive integer, got ${value}\n${USAGE}`);
    return n;
  };
  /** A comma list whose every item is one of `known`. */
  const listOf = <T extends string>(flag: string, value: string | undefined, known: readonly T[]): T[] => {
    const list = (value ?? '').split(',').filter((m) => m !== '');
    if (list.length === 0) throw new Error(`${flag} needs a list\n${USAGE}`);
    for (const m of list) {
      if (!(known as readonly string[]).includes(m)) throw new Error(`${flag}: unknown ${m} (known: ${known.join(', ')})\n${USAGE}`);
    }
    return list as T[];
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    switch (flag) {
      case '--threads':
        threads = positive(flag, value);
        i++;
        break;
      case '--reps':
        reps = positive(flag, value);
        i++;
        break;
      case '--kv':
        if (value !== 'f16' && value !== 'f32') throw new Error(`--kv takes f16 or f32\n${USAGE}`);
        kvFormat = value;
        i++;
        break;
      case '--models':
        models = listOf(flag, value, MODEL_KEYS);
        i++;
        break;
      case '--gguf': {
        const files = (value ?? '').split(',').filter((f) => f !== '');
        if (files.length === 0) throw new Error(`--gguf needs a file\n${USAGE}`);
        ggufs.push(...files);
        i++;
        break;
      }
      case '--shape':
        shapes.push(...listOf(flag, value, MODEL_SHAPES));
        i++;
        break;
      case '--layers':
        layers = positive(flag, value);
        i++;
        break;
      case '--vocab':
        vocab = positive(flag, value);
        if (vocab < 8) throw new Error(`--vocab needs at least 8, got ${value}\n${USAGE}`);
        i++;
        break;
      case '--types':
        types = listOf(flag, value, WEIGHT_TYPES);
        i++;
        break;
      case '--models-dir':
        if (value === undefined) throw new Error(`--models-dir needs a folder\n${USAGE}`);
        modelsDir = resolve(value);
        i++;
        break;
      case '--prompts':
      case '--batch': {
        const list = (value ?? '').split(',').map((v) => positive(flag, v));
        if (flag === '--prompts') prompts = list;
        else batch = list;
        i++;
        break;
      }
      case '--against':
        if (value !== 'peer' && value !== 'kernels') throw new Error(`--against takes peer or kernels\n${USAGE}`);
        against = value;
        i++;
        break;
      case '--wait-quiet': {
        const n = Number(value);
        if (!Number.isFinite(n) || n < 0) throw new Error(`--wait-quiet needs seconds, got ${value}\n${USAGE}`);
        waitQuiet = n;
        i++;
        break;
      }
      case '--quick':
        quick = true;
        break;
      case '--smoke':
        smoke = true;
        break;
      case '--out':
        if (value === undefined) throw new Error(`--out needs a file\n${USAGE}`);
        out = value;
        i++;
        break;
      case '--help':
      case '-h':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${flag}\n${USAGE}`);
    }
  }
  if (shapes.length === 0 && (layers !== undefined || vocab !== undefined || types !== undefined)) {
    throw new Error(`--layers, --vocab and --types apply to --shape models: give --shape\n${USAGE}`);
  }
  const extra = [
    ...ggufs.map(ggufModel),
    ...shapes.flatMap((shape) => (types ?? ['f16' as const]).map((type) => shapeModel(shape, type, layers, vocab, modelsDir))),
  ];
  // --smoke benches the --gguf/--shape models alone, or else the fixture: never the fixed llama-100m keys.
  const fixed = smoke ? (extra.length > 0 ? [] : ['stories260K' as const]) : (models ?? (extra.length > 0 ? [] : MODEL_KEYS));
  const specs = [...fixed.map(fixedModel), ...extra];
  const keys = specs.map((m) => m.key);
  const twice = keys.find((k, i) => keys.indexOf(k) !== i);
  if (twice !== undefined) throw new Error(`model ${twice} is named twice (by --models, --gguf or --shape): each results key once\n${USAGE}`);
  if (smoke) {
    return {
      threads: 1,
      reps: 1,
      kvFormat,
      models: specs,
      prefillTokens: [32],
      decodePromptTokens: 8,
      decodeTokens: 8,
      concurrency: [1, 4],
      against: 'none',
      out: out ?? `${ROOT}build/engine-cpu-smoke.json`,
      smoke,
      waitQuiet: 0,
    };
  }
  return {
    threads,
    reps: quick ? 1 : reps,
    kvFormat,
    models: specs,
    prefillTokens: prompts,
    decodePromptTokens: 16,
    decodeTokens: quick ? 32 : 128,
    concurrency: batch,
    against,
    out: out ?? RESULTS.replace(/\.json$/, `${threads === availableParallelism() ? '' : `-${threads}t`}${against === 'kernels' ? '-kernels' : ''}${quick ? '-quick' : ''}.json`),
    smoke,
    waitQuiet,
  };
}
