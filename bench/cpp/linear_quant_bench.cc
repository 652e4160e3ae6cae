// linear() throughput per weight type: GEMV (1 token) and GEMM (8, 32 tokens) on the projection
// shapes of a ~100M Llama (768x768, 2048x768, 768x2048), one thread. Prints weight GB/s and
// GFLOP/s (2 * rows * cols * tokens per call) of the GEMM (gemm/gemm.h), then the GFLOP/s of the
// per-row kernels it replaced and the speedup, measured in the same run.
// Build: the CMake target fineserve_linear_quant_bench (built with the C++ tests; ctest runs it once).
// Run:   build/fineserve_linear_quant_bench [seconds per point, default 0.3] [types, e.g. Q4_K,Q6_K];
//        FINESERVE_SIMD lowers the level.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "engine/thread_pool.h"
#include "gemm/gemm.h"
#include "ops/linear.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"
#include "simd/half.h"

using fineserve::model::DType;

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.3;
  fineserve::engine::ThreadPool pool(1);
  std::printf("SIMD level: %s\n", fineserve::simd::level_name(fineserve::simd::active().level));
  std::printf("%-6s %-10s %6s %10s %8s %9s %9s %6s\n", "dtype", "shape", "tokens", "us/call", "GB/s", "GFLOP/s",
              "old GF/s", "x old");
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K,
                         DType::Q6_K, DType::W8A8, DType::FP8, DType::W4A16, DType::W4A8};
  const size_t shapes[][2] = {{768, 768}, {2048, 768}, {768, 2048}};
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  for (DType t : types) {
    // An optional second argument names the types to run, e.g. "Q4_K,Q6_K".
    if (argc > 2 && std::strstr(argv[2], fineserve::model::dtype_name(t)) == nullptr) continue;
    for (const auto& s : shapes) {
      const size_t out = s[0], in = s[1];
      const uint32_t group = (t == DType::W4A16 || t == DType::W4A8) ? 128 : 0;
      const uint64_t rb = fineserve::quant::row_bytes(t, in, group);
      std::vector<uint8_t> bytes(rb * out);
      std::vector<float> row(in);
      for (size_t r = 0; r < out; ++r) {
        for (float& v : row) v = dist(rng);
        uint8_t* dst = bytes.data() + r * rb;
        if (t == DType::F32) {
          std::memcpy(dst, row.data(), 4 * in);
        } else if (t == DType::F16 || t == DType::BF16) {
          for (size_t i = 0; i < in; ++i) {
            uint16_t h = t == DType::F16 ? fineserve::simd::f32_to_f16_scalar(row[i]) : fineserve::simd::f32_to_bf16_scalar(row[i]);
            std::memcpy(dst + 2 * i, &h, 2);
          }
        } else if (t == DType::Q4_K || t == DType::Q6_K) {
          for (size_t i = 0; i < rb; ++i) dst[i] = uint8_t(rng());
          const size_t blk = t == DType::Q4_K ? 144 : 210;
          for (size_t at = 0; at < rb; at += blk) {
            uint16_t h = fineserve::simd::f32_to_f16_scalar(0.001f);
            std::memcpy(dst + at + (t == DType::Q4_K ? 0 : 208), &h, 2);
            if (t == DType::Q4_K) std::memcpy(dst + at + 2, &h, 2);
          }
        } else {
          fineserve::quant::quantize_row(t, row.data(), in, group, dst);
        }
      }
      fineserve::model::TensorView w;
      w.name = "w";
      w.dtype = t;
      w.shape = {out, in};
      w.data = bytes.data();
      w.bytes = bytes.size();
      w.group = group;
      for (size_t tokens : {1u, 8u, 32u}) {
        std::vector<float> x(tokens * in), y(tokens * out);
        for (float& v : x) v = dist(rng) * 20;
        // The GEMM and the per-row kernels it replaced (FINESERVE_GEMM=0), interleaved in rounds
        // and each timed by its best round, so load from other processes hits both alike.
        double best[2] = {1e30, 1e30};
        for (int round = 0; round < 5; ++round) {
          for (int path = 0; path < 2; ++path) {
            fineserve::gemm::set_enabled(path == 1);
            fineserve::ops::linear(pool, x.data(), tokens, w, nullptr, y.data());
            size_t calls = 0;
            auto start = std::chrono::steady_clock::now();
            double elapsed = 0;
            while (elapsed < seconds / 5) {
              fineserve::ops::linear(pool, x.data(), tokens, w, nullptr, y.data());
              ++calls;
              elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            }
            best[path] = std::min(best[path], elapsed / double(calls));
          }
        }
        const double per = best[1];
        char shape[32];
        std::snprintf(shape, sizeof shape, "%zux%zu", out, in);
        std::printf("%-6s %-10s %6zu %10.1f %8.2f %9.2f %9.2f %6.2f\n", fineserve::model::dtype_name(t), shape, tokens,
                    per * 1e6, double(bytes.size()) / per / 1e9, 2.0 * double(out * in * tokens) / per / 1e9,
                    2.0 * double(out * in * tokens) / best[0] / 1e9, best[0] / per);
      }
    }
  }
  return 0;
}
