/**
 * CPU engine benchmark: fineserve's ModelRunner against node-llama-cpp 3.22.1 (llama.cpp's CPU
 * prebuilt, the speed anchor) in one process, on the same GGUF with the same thread count, or
 * (--against kernels) against fineserve's own per-row kernels of before the GEMM
 * (FINESERVE_GEMM=0): prefill tok/s at 32, 256 and 1024 prompt tokens, decode tok/s (128 greedy
 * tokens) at 1, 8 and 32 concurrent sequences, each with its GFLOP/s and weight GB/s, and the
 * roofline of this CPU (a STREAM-like copy and an FMA loop) measured in the same run. Models: the
 * stories260K fixture and a ~100M random-weight Llama with F16 matrices (generated once into
 * .cache/models/), and its Q8_0 / Q4_0 / Q4_K_M conversions; or any GGUF file (--gguf) and any
 * generator shape in chosen weight types (--shape, generated the same way). Not a test.
 *
 *   node --import tsx bench/engine-cpu.ts [--threads N] [--reps N] [--kv f16|f32] [--models a,b]
 *       [--gguf F,F] [--shape S [--layers N] [--vocab N] [--types f16,q8_0]]
 *       [--prompts 32,256,1024] [--batch 1,8,32] [--against peer|kernels] [--quick]
 *
 * Installs the peer on first use (scripts/peer.mjs, into .cache/peers). Writes
 * bench/results/engine-cpu.json and prints one summary line (ratios fineserve / node-llama-cpp).
 * The pieces, under bench/engine-cpu/:
 *   config.ts    command line, paths, sizes, the models each results key names
 *   models.ts    each model's file: read, generated once, or quantized
 *   engines.ts   fineserve and node-llama-cpp behind one generate() (shared with the peer test)
 *   measure.ts   prefill and differential decode timing, medians, greedy agreement
 *   roofline.ts  the copy and FMA roofline (roofline.cc, built with g++)
 *   rates.ts     GFLOP/s, GB/s and roofline shares of each figure
 *   main.ts      the run, the results file, the summary line
 * @module
 */
import { main } from './engine-cpu/main.js';

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
