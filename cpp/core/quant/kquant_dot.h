// Integer dot products of Q4_K / Q6_K weight rows with activations quantized to llama.cpp's Q8_K
// blocks, as ggml's vec_dot_q4_K_q8_K / q6_K_q8_K compute them: per 256-element super-block, an
// exact int32 sum of (weight code x activation code) with the sub-block scales applied, then one
// float step per super-block. Before this, K-quant rows were decoded to f32 and went through the
// float GEMM (weight_format.h).
//
// Numerics, the same at every SIMD level (the AVX2 kernels reduce each super-block's integer sum to
// one int32 before the float step, so they are bit-identical to the portable ones):
//   Q8_K  per 256 activations x: max = the value of largest magnitude (first on ties),
//         d = 1 / (-127 / max), q = min(127, round-half-even(x * (-127 / max))) (quantize_row_q8_K_ref);
//         bsums[i] = sum of q over elements 16i .. 16i + 15.
// Each super-block's float step is two (Q4_K) or one (Q6_K) fused multiply-adds into the running sum:
//   Q4_K  sum = fma(d_w * d_x, S, sum), then sum = fma(-(dmin_w * d_x), M, sum), with
//         S = sum_j sc_j * sum_l q4_jl * q8_jl and M = sum_j m_j * (bsums[2j] + bsums[2j + 1]).
//   Q6_K  sum = fma(d_w * d_x, S - 32 * M, sum) with S = sum_j sc_j * sum_l q6_jl * q8_jl over the
//         16 sub-blocks of 16 (q6 unsigned 0..63) and M = sum_j sc_j * bsums[j].
// A token's result depends only on its own activations and the row, never on how many tokens
// share the call (batch invariance): tokens are independent lanes of the same loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/tensor.h"
#include "simd/dispatch.h"

namespace fineserve::quant::kquant {

inline constexpr size_t kSuper = 256;

// Activations of one call as Q8_K blocks, token after token.
struct Q8K {
  size_t tokens = 0, blocks = 0;   // blocks per token = cols / 256
  std::vector<int8_t> q;           // tokens x blocks x 256
  std::vector<float> d;            // tokens x blocks
  std::vector<int16_t> bsums;      // tokens x blocks x 16
};

// Quantizes `tokens` rows of `cols` floats (cols a multiple of 256).
void quantize_q8_k(const float* x, size_t tokens, size_t cols, Q8K& out);

// y[t * y_stride + r] = dot(row r, token t) (+ bias[r]) for every token and rows r0 <= r < r1;
// row r starts at w + r * w_stride.
using DotFn = void (*)(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r0, size_t r1, const float* bias,
                       float* y, size_t y_stride);

// The kernel of Q4_K / Q6_K at `level` by resolve_kernel's rule (portable at Baseline, AVX2 above);
// nullptr for the other types.
DotFn dot_kernel(model::DType t, simd::Level level);

// The portable kernels (Baseline), and the AVX2 ones (kquant_dot_avx2.cc, FINESERVE_HAVE_AVX2).
void dot_q4_k(const uint8_t*, size_t, const Q8K&, size_t, size_t, const float*, float*, size_t);
void dot_q6_k(const uint8_t*, size_t, const Q8K&, size_t, size_t, const float*, float*, size_t);
namespace avx2 {
void dot_q4_k(const uint8_t*, size_t, const Q8K&, size_t, size_t, const float*, float*, size_t);
void dot_q6_k(const uint8_t*, size_t, const Q8K&, size_t, size_t, const float*, float*, size_t);
}  // namespace avx2

// On unless FINESERVE_KQUANT_DOT=0 (read at every call, like FINESERVE_GEMM), so a benchmark can
// compare it with the f32 decode path in one process.
bool enabled();

}  // namespace fineserve::quant::kquant
