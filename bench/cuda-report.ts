/**
 * Joins what scripts/device-run.sh measured on a GPU (gpu-bench.json from bench/cuda/gpu_bench.cc,
 * torch-peer.json from bench/cuda/torch_peer.py) into bench/results/cuda.json, with the ratios the
 * README quotes: decode tok/s as a fraction of the HBM roofline, prefill and GEMM TFLOP/s as a
 * fraction of the cuBLAS matrix peak measured in the same session, and decode tok/s against
 * PyTorch eager at the same shape and batch. Prints the README's markdown table.
 *
 *   node --import tsx bench/cuda-report.ts <folder with gpu-bench.json [and torch-peer.json]> [--out FILE]
 *
 * bench/cuda/sample-simt/ holds a gpu-bench.json from the SIMT emulator (gpu_bench --smoke), on
 * which npm test runs this report (test/bench-smoke.test.ts) so it cannot rot between GPU sessions.
 * Exits non-zero when the input has no decode rows or a figure is not a finite number.
 * @module
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface DecodeRow { shape: string; precision: string; batch: number; context: number; stepMs: number; tokPerS: number; rooflineMs?: number; rooflineFraction?: number; weightBytes?: number; kvBytes?: number }
interface FlopRow { shape?: string; precision: string; tokens?: number; m?: number; n?: number; k?: number; ms: number; tflops: number }
interface GpuBench { device: string; simulated: boolean; copyBytesPerS: number; decode: DecodeRow[]; prefill: FlopRow[]; gemm: FlopRow[]; colocated: unknown[] }
interface TorchPeer { torch: string; device: string; copyBytesPerS: number; matmulTflops_fp16: number; matmulTflops_bf16: number; decode: DecodeRow[]; prefill: FlopRow[]; errors?: string[] }

const { values: args, positionals } = parseArgs({ options: { out: { type: 'string' } }, allowPositionals: true });
const folder = positionals[0];
if (!folder || positionals.length > 1) {
  console.error('usage: bench/cuda-report.ts <folder with gpu-bench.json and torch-peer.json> [--out FILE]');
  process.exit(2);
}
const read = <T>(name: string): T | undefined => {
  const p = join(folder, name);
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as T) : undefined;
};
const ours = read<GpuBench>('gpu-bench.json');
if (!ours) {
  console.error(`no gpu-bench.json in ${folder}`);
  process.exit(1);
}
const peer = read<TorchPeer>('torch-peer.json');

// The ceilings: the faster of the two copy measurements, and cuBLAS's dense fp16 rate.
const copy = Math.max(ours.copyBytesPerS, peer?.copyBytesPerS ?? 0);
const matmul = peer?.matmulTflops_fp16;
const decode = ours.decode.map((r) => {
  const floorMs = ((r.weightBytes ?? 0) + (r.kvBytes ?? 0)) / copy * 1e3;  // copy counts bytes read + written
  const torch = peer?.decode.find((p) => p.shape === r.shape && p.batch === r.batch && r.precision === 'fp16');
  return { ...r, rooflineMs: floorMs, rooflineFraction: floorMs / r.stepMs, ...(torch ? { torchTokPerS: torch.tokPerS, vsTorch: r.tokPerS / torch.tokPerS } : {}) };
});
const ofPeak = (rows: FlopRow[]) => rows.map((r) => ({ ...r, ...(matmul ? { fractionOfMatmulPeak: r.tflops / matmul } : {}) }));
const result = {
  measuredOn: ours.device,
  simulated: ours.simulated,
  ceilings: { copyBytesPerS: copy, matmulTflopsFp16: matmul ?? null, matmulTflopsBf16: peer?.matmulTflops_bf16 ?? null, torch: peer?.torch ?? null },
  decode,
  prefill: ofPeak(ours.prefill),
  gemm: ofPeak(ours.gemm),
  colocated: ours.colocated,
  torch: peer ? { decode: peer.decode, prefill: ofPeak(peer.prefill), errors: peer.errors ?? [] } : null,
};
// Emulator runs (the --smoke path under the SIMT build) check the plumbing, not the speed: they
// never overwrite the GPU results.
const out = args.out === undefined ? join(dirname(fileURLToPath(import.meta.url)), 'results', ours.simulated ? 'cuda-simt-smoke.json' : 'cuda.json') : resolve(args.out);
if (ours.simulated) console.log('note: gpu-bench.json comes from the SIMT emulator; its times say nothing about a GPU');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 1) + '\n');

const pct = (x?: number) => (x === undefined ? '-' : `${(100 * x).toFixed(0)} %`);
console.log(`| shape | precision | batch | tok/s | of roofline | vs PyTorch eager |`);
console.log(`|---|---|---|---|---|---|`);
for (const r of decode) {
  const vs = 'vsTorch' in r ? `${(r.vsTorch as number).toFixed(2)}x` : '-';
  console.log(`| ${r.shape} | ${r.precision} | ${r.batch} | ${r.tokPerS.toFixed(0)} | ${pct(r.rooflineFraction)} | ${vs} |`);
}
for (const r of result.prefill) console.log(`prefill ${r.shape} ${r.precision}: ${r.tflops.toFixed(1)} TFLOP/s (${pct((r as { fractionOfMatmulPeak?: number }).fractionOfMatmulPeak)} of cuBLAS fp16)`);
console.log(`wrote ${out}`);
const broken = [
  ...(decode.length === 0 ? ['no decode rows'] : []),
  ...decode.filter((r) => !(Number.isFinite(r.tokPerS) && r.tokPerS > 0)).map((r) => `decode ${r.shape} ${r.precision} batch ${r.batch}: tok/s ${r.tokPerS}`),
  ...[...result.prefill, ...result.gemm].filter((r) => !Number.isFinite(r.tflops)).map((r) => `${r.shape ?? `${r.m}x${r.n}x${r.k}`} ${r.precision}: TFLOP/s ${r.tflops}`),
];
if (broken.length > 0) {
  console.error(`cuda-report: FAILED:\n  ${broken.join('\n  ')}`);
  process.exitCode = 1;
}
