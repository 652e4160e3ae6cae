#!/usr/bin/env bash
# Builds, on this machine (nvcc, no GPU), what scripts/device-run.sh runs on a GPU machine: the
# CUDA test binary and the GPU benchmark, for sm_90 (H100/H200; FINESERVE_DEVICE_ARCH to change;
# one target keeps both under the device tool's 64 MiB carry), with the CUDA runtime and libstdc++
# linked statically so they run on the device image as they are, and the Engine with Node.js for an
# end-to-end run. Everything lands compressed in .device/ (git ignores it, about 35 MB), to be
# carried with the device tool's `carry: [".device"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FINESERVE_DEVICE_BUILD:-build-device}
cmake -S . -B "$build" -DWITH_CUDA=ON -DFINESERVE_TESTS=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_COMPILER="${CUDACXX:-$(command -v nvcc)}" \
  -DCMAKE_CUDA_ARCHITECTURES="${FINESERVE_DEVICE_ARCH:-90}" \
  -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" >/dev/null
cmake --build "$build" --parallel "$(nproc)" --target fineserve_gpu_tests fineserve_gpu_bench
rm -rf .device && mkdir -p .device/bin
cp "$build/fineserve_gpu_tests" "$build/fineserve_gpu_bench" .device/bin/
tar -cJf .device/bin.tar.xz -C .device bin && rm -rf .device/bin

# The Engine end to end (bench/cuda/engine-smoke.mjs) needs Node.js on the GPU machine, which has
# none: the node binary, the addon built with CUDA, dist/ and the runtime dependencies, compressed.
npm run build >/dev/null
node -e "const b = require('./build/Release/fineserve.node'); if (!b.buildInfo.cuda) { console.error('device-prepare: build/Release/fineserve.node was built without CUDA'); process.exit(1); }"
xz -6 -T0 < "$(command -v node)" > .device/node.xz
tar -cJf .device/engine.tar.xz package.json dist build/Release/fineserve.node bench/cuda/engine-smoke.mjs \
  node_modules/@huggingface/jinja node_modules/@huggingface/tokenizers node_modules/node-gyp-build
ls -la .device
du -sh .device
