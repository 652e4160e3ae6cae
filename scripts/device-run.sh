#!/usr/bin/env bash
# The CUDA backend's checks and benchmarks on a GPU machine, in one call (issue #8). Expects what
# scripts/device-prepare.sh put in .device/; writes everything under $OUT and prints a
# short summary last. Stages are independent: one failing does not skip the others.
#   1. nvidia-smi, the device as found (clocks and settings are never touched);
#   2. fineserve_gpu_tests: every kernel against the CPU path, the executor against the CPU
#      executor and the stories260K golden file, co-located models concurrently;
#   3. bench/cuda/engine-smoke.mjs: the whole Engine on 'cuda:0' against the CPU (Node.js carried);
#      fineserve_gpu_bench: copy bandwidth, decode at batch 1..256 per precision against the HBM
#      roofline, prefill and GEMM TFLOP/s, two models on two streams at once;
#   4. bench/cuda/torch_peer.py: cuBLAS matrix peak and PyTorch eager on the same shapes;
#   and a count of the instructions the kernels compiled to (cuobjdump, in $OUT/sass-summary.txt).
# Then, here: `npm run bench:cuda-report -- <files_at>` writes bench/results/cuda.json and the table.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fineserve-device}
mkdir -p "$OUT"
work=$(mktemp -d)
BIN=.device/bin
if [ -f .device/bin.tar.xz ]; then tar -xJf .device/bin.tar.xz -C "$work" && BIN=$work/bin; fi
BENCH_ARGS=${FINESERVE_BENCH_ARGS:-}
status=()

# The stories260K fixture: ./shared or ../shared next to the copied tree.
for d in "${FINESERVE_SHARED:-}" "$PWD/shared" "$PWD/../shared"; do
  if [ -n "$d" ] && [ -d "$d/fixtures/stories260K" ]; then export FINESERVE_SHARED="$d"; break; fi
done

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
head -15 "$OUT/nvidia-smi.txt"

stage() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  status+=("$name: rc $rc in $(( $(date +%s) - t0 )) s")
  tail -5 "$OUT/$name.log"
}

# Which instructions the kernels compiled to (this machine has the disassembler; the build one
# does not): tensor-core ops (HMMA/IMMA), 16-byte loads, local-memory spills (LDL/STL).
if command -v cuobjdump >/dev/null; then
  cuobjdump --dump-sass "$BIN/fineserve_gpu_bench" 2>/dev/null |
    grep -oE "\b(HMMA|IMMA|HGMMA|QGMMA|LDG\.E\.128|LDG\.E\.64|LDS\.128|LDL|STL)[.A-Z0-9]*" |
    sort | uniq -c | sort -rn > "$OUT/sass-summary.txt" || true
  head -12 "$OUT/sass-summary.txt"
fi

stage tests 75 "$BIN/fineserve_gpu_tests" --duration=true
# The Engine end to end on 'cuda:0' against the CPU (Node.js carried in .device/).
if [ -f .device/node.xz ] && [ -f .device/engine.tar.xz ]; then
  mkdir -p "$work/engine" && xz -dc .device/node.xz > "$work/node" && chmod +x "$work/node" &&
    tar -xJf .device/engine.tar.xz -C "$work/engine" &&
    stage engine 90 env OUT="$OUT" FINESERVE_ADDON="$work/engine/build/Release/fineserve.node" \
      "$work/node" "$work/engine/bench/cuda/engine-smoke.mjs"
fi
stage bench 240 "$BIN/fineserve_gpu_bench" --out "$OUT/gpu-bench.json" $BENCH_ARGS
if [ -f "$OUT/gpu-bench.json" ]; then
  stage torch 180 python3 bench/cuda/torch_peer.py "$OUT/gpu-bench.json" "$OUT/torch-peer.json"
fi

echo "--- summary"
printf '%s\n' "${status[@]}"
grep -E "test cases|assertions" "$OUT/tests.log" || true
grep -E "GPU vs CPU|co-located:" "$OUT/engine.log" 2>/dev/null || true
grep -E "^(decode|prefill|gemm|co-located)" "$OUT/bench.log" | awk 'NR % 3 == 1' | head -40 || true
