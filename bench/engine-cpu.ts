/**
 * CPU engine benchmark: fineserve's ModelRunner against node-llama-cpp 3.22.1 (llama.cpp's CPU
 * prebuilt, the speed anchor) in one process, on the same GGUF with the same thread count:
 * prefill tok/s (256-token prompt), single-stream decode tok/s (128 greedy tokens) and aggregate
 * decode tok/s with 8 and 32 concurrent sequences. Models: the stories260K fixture and a ~100M
 * random-weight Llama with F16 matrices (generated once into .cache/models/). Not a test.
 * See bench/README-engine-cpu.md.
 *
 *   node --import tsx bench/engine-cpu.ts [--threads N] [--reps N] [--kv f16|f32] [--models a,b] [--quick]
 *
 * Installs the peer on first use (scripts/peer.mjs, into .cache/peers). Writes
 * bench/results/engine-cpu.json and prints one summary line (ratios fineserve / node-llama-cpp).
 * The pieces, under bench/engine-cpu/:
 *   config.ts    command line, paths, sizes
 *   engines.ts   fineserve and node-llama-cpp behind one generate() (shared with the peer test)
 *   measure.ts   prefill and differential decode timing, medians, greedy agreement
 *   main.ts      the run, the results file, the summary line
 * @module
 */
import { main } from './engine-cpu/main.js';

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
