/**
 * Command line and fixed settings of the CPU engine benchmark.
 * @module
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const STORIES_GGUF = fileURLToPath(new URL('../../../shared/fixtures/stories260K/stories260K.gguf', import.meta.url));
/** The ~100M random-weight Llama (F16 matrices), generated once and reused. */
export const LLAMA_100M_GGUF = `${ROOT}.cache/models/llama-100m-f16.gguf`;
export const RESULTS = `${ROOT}bench/results/engine-cpu.json`;

/** The quantized files, written from the F16 one by fineserve's GGUF writer at each run. */
export const llama100mQuantGguf = (type: 'q8_0' | 'q4_0' | 'q4_k_m'): string => `${ROOT}.cache/models/llama-100m-${type}.gguf`;

export type ModelKey = 'stories260K' | 'llama-100m-f16' | 'llama-100m-q8_0' | 'llama-100m-q4_0' | 'llama-100m-q4_k_m';
export const MODEL_KEYS: readonly ModelKey[] = ['stories260K', 'llama-100m-f16', 'llama-100m-q8_0', 'llama-100m-q4_0', 'llama-100m-q4_k_m'];

export type Against = 'peer' | 'kernels' | 'none';

export interface BenchConfig {
  readonly threads: number;
  /** Timed repetitions per measurement (median taken); undefined: per model default. */
  readonly reps: number | undefined;
  readonly kvFormat: 'f32' | 'f16';
  readonly models: readonly ModelKey[];
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
  /** A toy run of fineserve alone (no peer): stories260K, 1 thread, a few tokens, for npm test. */
  readonly smoke: boolean;
  /** Before each measurement, wait up to this many seconds for other processes to go quiet. */
  readonly waitQuiet: number;
}

const USAGE = `usage: node --import tsx bench/engine-cpu.ts [options]
  --threads N        threads for both engines (default: os.availableParallelism() = ${availableParallelism()})
  --reps N           timed repetitions per measurement, median taken (default: 5 for stories260K, 3 for llama-100m)
  --kv f16|f32       KV cache format for both engines (default f16, node-llama-cpp's default)
  --models a,b       ${MODEL_KEYS.join(',')} (default all)
  --prompts a,b      prefill prompt lengths (default 32,256,1024; capped by the model's context)
  --batch a,b        concurrent sequences of the decode measurements (default 1,8,32)
  --against peer|kernels
                     compare with node-llama-cpp (default), or with fineserve's per-row kernels
                     of before the GEMM (FINESERVE_GEMM=0) in the same process
  --wait-quiet S     before each measurement, wait up to S seconds until other processes leave
                     the benchmark's threads their cores (0.25 core of noise allowed), and redo (twice at most) one they disturbed (default 0:
                     measure at once, once; the other processes' load is recorded either way)
  --quick            1 rep, 32 decode tokens: a short run (results to engine-cpu-quick.json)
  --smoke            fineserve alone (no node-llama-cpp, nothing installed), stories260K, 1 thread,
                     1 rep, a few tokens: checks the benchmark runs (results to build/engine-cpu-smoke.json)
  --out FILE         results file (default bench/results/engine-cpu.json at the default thread
                     count, engine-cpu-<N>t.json at another)`;

export function parseArgs(argv: readonly string[]): BenchConfig {
  let threads = availableParallelism();
  let reps: number | undefined;
  let kvFormat: 'f32' | 'f16' = 'f16';
  let models: ModelKey[] = [...MODEL_KEYS];
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
      case '--models': {
        const list = (value ?? '').split(',').filter((m) => m !== '');
        for (const m of list) {
          if (!(MODEL_KEYS as readonly string[]).includes(m)) throw new Error(`unknown model ${m}\n${USAGE}`);
        }
        models = list as ModelKey[];
        i++;
        break;
      }
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
  if (smoke) {
    return {
      threads: 1,
      reps: 1,
      kvFormat,
      models: ['stories260K'],
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
    models,
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
