// The register-blocked GEMM behind linear() on AVX2: y[t][r] = sum_k x[t][k] * w[r][k] for a tile
// of tokens x weight rows at a time, so that each activation vector loaded feeds several weight
// rows and each weight vector several tokens (tinyBLAS's idea: an RT x RW tile of 8-lane
// accumulators sized to the 16 YMM registers, reduced horizontally once at the end).
//
// Batch invariance: every output element owns one 8-lane accumulator that takes the products of
// its row and token in increasing k (one block of 8 or 32 elements per step, in one fixed order),
// and is reduced by one fixed horizontal sum. How many tokens the call has, which tile a token
// lands in and which tile shape serves it (4 x 3 for prefill, 1 x 8 for decode) change only which
// accumulators run side by side, never the arithmetic of any one: a sequence's logits are
// bit-identical alone and in a batch. test_gemm.cc checks it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/tensor.h"
#include "quant/qdot.h"
#include "simd/dispatch.h"

namespace fineserve::gemm {

// How weight rows are stored for the float kernel: F32 read in place, F16/BF16 widened in registers.
enum class FloatWeights : uint8_t { F32, F16, BF16 };

// One call's operands; a block kernel computes every token against weight rows [r0, r1).
struct Operands {
  const uint8_t* w = nullptr;  // row 0 of the weights
  uint64_t w_stride = 0;       // bytes between weight rows
  size_t k = 0;                // elements per row (the reduction length)
  const float* x = nullptr;    // float kernels: tokens x k
  size_t x_stride = 0;         // floats between tokens of x
  const float* token_scale = nullptr;  // FP8 / W4A8: each token's output is multiplied by it
  uint32_t group = 0;          // W4A16 / W4A8: the group size
  const quant::Activations* acts = nullptr;  // Q8_0 / Q4_0: the call's quantized activations
  const float* bias = nullptr;  // [out] or null
  float* y = nullptr;          // tokens x y_stride
  size_t y_stride = 0;
};

using BlockFn = void (*)(const Operands& op, size_t tokens, size_t r0, size_t r1);

// The AVX2 block kernels (gemm_avx2.cc, compiled with -mavx2 -mfma -mf16c).
struct Kernels {
  BlockFn f32, f16, bf16;  // float activations
  BlockFn q8_0, q4_0;      // Q8_0-block activations (quant::ActPrep::Q8Blocks / Q8BlocksQ4)
  // Rows decoded to f32 a few at a time, then the F32 tiles: the K-quants and W4A16 (float
  // activations), W4A8 and FP8 (E4M3 activations and a per-token scale, weight_format.h).
  BlockFn q4_k, q6_k, w4a16, w4a8, fp8;
};

// The kernels a SIMD level runs (by simd::resolve_kernel's rule: AVX-512 has its own float tiles,
// gemm_avx512.cc, and AVX2's for the rest), or nullptr at Baseline, where linear() keeps its
// portable per-row path. Q8_0 / Q4_0 take the packed integer GEMM (packed.h) first where it runs.
const Kernels* kernels_for(simd::Level level);

// The block kernel of a weight type, or nullptr when the GEMM does not cover it.
BlockFn block_kernel(model::DType t, simd::Level level);

// The GEMM is on unless FINESERVE_GEMM=0 (read at each call until set_enabled): the per-row
// kernels it replaced stay selectable, so benchmarks compare both in one run (bench:engine-cpu
// flips the variable between runs) and a suspected kernel bug can be bisected from the command line.
bool enabled();
void set_enabled(bool on);

}  // namespace fineserve::gemm
