#!/usr/bin/env bash
# Builds, on this machine (nvcc, no GPU), what scripts/device-run.sh runs on a GPU machine: the
# CUDA test binary and the GPU benchmark, for sm_90 (H100/H200; FINESERVE_DEVICE_ARCH to change;
# one target keeps both under the device tool's 64 MiB carry), with the CUDA runtime and libstdc++
# linked statically so they run on the device image as they are. They land in .device/bin (git
# ignores .device/), to be carried with the device tool's `carry: [".device"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FINESERVE_DEVICE_BUILD:-build-device}
cmake -S . -B "$build" -DWITH_CUDA=ON -DFINESERVE_TESTS=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_COMPILER="${CUDACXX:-$(command -v nvcc)}" \
  -DCMAKE_CUDA_ARCHITECTURES="${FINESERVE_DEVICE_ARCH:-90}" \
  -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" >/dev/null
cmake --build "$build" --parallel "$(nproc)" --target fineserve_gpu_tests fineserve_gpu_bench
mkdir -p .device/bin
cp "$build/fineserve_gpu_tests" "$build/fineserve_gpu_bench" .device/bin/
ls -la .device/bin
