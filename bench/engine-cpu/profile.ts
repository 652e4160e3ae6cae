/**
 * One engine, one metric, in a loop: a target for `perf record` (no peer loaded, no warm-up noise
 * from the other engine). Prints the throughput of each round and a per-step breakdown of where
 * fineserve's wall time goes between the JS scheduler and the native step.
 *
 *   perf record -F 999 -g -o /tmp/fs.perf -- node --import tsx bench/engine-cpu/profile.ts \
 *       --model llama-100m-f16 --metric decode --sequences 1 --threads 2 --rounds 3
 *   perf report -i /tmp/fs.perf --no-children --percent-limit 1 --stdio
 *
 * --engine peer profiles node-llama-cpp instead (same prompts).
 * @module
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';

import { loadNative } from '../../lib/native/loader.js';
import { llama100mQuantGguf, LLAMA_100M_GGUF, STORIES_GGUF } from './config.js';
import { FineserveEngine, PeerEngine, type Engine } from './engines.js';
import { makePrompts, timeGenerate } from './measure.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const modelKey = args.get('model') ?? 'llama-100m-f16';
const metric = args.get('metric') ?? 'decode';
const sequences = Number(args.get('sequences') ?? 1);
const threads = Number(args.get('threads') ?? availableParallelism());
const rounds = Number(args.get('rounds') ?? 3);
const kvFormat = args.get('kv') === 'f32' ? 'f32' : 'f16';
const engineName = args.get('engine') ?? 'fineserve';
// Every model key names its own file: a quantized key used to profile the F16 file silently.
const PATHS: Record<string, string> = {
  stories260K: STORIES_GGUF,
  'llama-100m-f16': LLAMA_100M_GGUF,
  'llama-100m-q8_0': llama100mQuantGguf('q8_0'),
  'llama-100m-q4_0': llama100mQuantGguf('q4_0'),
  'llama-100m-q4_k_m': llama100mQuantGguf('q4_k_m'),
};
const path = PATHS[modelKey];
if (path === undefined) throw new Error(`--model ${modelKey}: unknown (known: ${Object.keys(PATHS).join(', ')})`);
if (!existsSync(path)) throw new Error(`missing ${path}: run bench/engine-cpu.ts once to generate it`);

// Subclass the addon's Executor so that each native step is timed: wall time splits into the
// native step and everything else (the JS scheduler, promise hops).
let stepSeconds = 0;
let steps = 0;
const binding = loadNative().binding as unknown as { Executor: new (...a: unknown[]) => { step(...a: unknown[]): Promise<unknown> } };
const NativeExecutor = binding.Executor;
binding.Executor = class TimedExecutor extends NativeExecutor {
  override async step(...a: unknown[]): Promise<unknown> {
    const t0 = performance.now();
    try {
      return await super.step(...a);
    } finally {
      stepSeconds += (performance.now() - t0) / 1000;
      steps++;
    }
  }
};

const engine: Engine =
  engineName === 'peer' ? await PeerEngine.open(path, { threads, kvFormat }) : await FineserveEngine.open(path, { threads, kvFormat });
const vocab = engine instanceof FineserveEngine ? engine.model.config.vocabSize : modelKey === 'stories260K' ? 512 : 32000;
const prompts = metric === 'prefill' ? makePrompts(1, 256, vocab, 1) : makePrompts(sequences, 16, vocab, 3);
const maxTokens = metric === 'prefill' ? 1 : 128;

for (let r = 0; r < rounds; r++) {
  stepSeconds = 0;
  steps = 0;
  const { seconds } = await timeGenerate(engine, prompts, maxTokens);
  const tokens = metric === 'prefill' ? prompts[0]!.length : sequences * maxTokens;
  const split =
    engine instanceof FineserveEngine
      ? `, ${steps} steps: native ${((stepSeconds / seconds) * 100).toFixed(1)}% of wall, ${((stepSeconds / Math.max(1, steps)) * 1000).toFixed(2)} ms/step`
      : '';
  console.log(`${engine.name} ${modelKey} ${metric} x${sequences} (${threads} threads): ${(tokens / seconds).toFixed(1)} tok/s${split}`);
}
await engine.close();
