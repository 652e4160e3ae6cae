// Dot products of quantized weight rows with activations quantized the way each weight type
// defines (weight_format.h), for a few tokens at a time: the inner loop of linear(). The
// activations of a whole call are prepared once, so a weight row, decoded once in registers, is
// used against up to kTokenTile tokens before the next row is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/tensor.h"
#include "simd/dispatch.h"

namespace fineserve::quant {

// Tokens one kernel call handles: four accumulators per token still fit in 16 AVX2 registers.
inline constexpr size_t kTokenTile = 4;

// Activations of one linear() call in the form the weight type's kernel reads. Per token, the
// arrays hold `stride` elements (cols rounded up to 32, zero padded) or stride / 32 blocks.
struct Activations {
  model::DType dtype = model::DType::F32;
  size_t tokens = 0, cols = 0, stride = 0;
  uint32_t group = 0;               // W4A16 / W4A8: the weight's group size
  std::vector<int8_t> q;            // Q8_0, Q4_0, W8A8: quantized x
  std::vector<float> f;             // FP8, W4A8: the E4M3 values of x decoded (exact); W4A16: x
  std::vector<float> block_scale;   // Q8_0, Q4_0: d of each 32-block (an f16 value)
  // Q4_0: per 32-block, 8 * (q[2i] + q[2i + 1]) for i < 16: the "- 8" of the weight nibbles,
  // subtracted from the pairwise sums of maddubs(nibbles, q) in the same int16 lanes.
  std::vector<int16_t> q4_offset;
  std::vector<float> token_scale;   // W8A8, FP8, W4A8: x = token_scale * q
};

// True for the weight types that have a RowDot kernel: traits(t).act != ActPrep::None
// (quant/weight_traits.h, where the kernels of each type and level are found: row_dot()).
bool has_row_dot(model::DType t);

// Applies input_scale (may be null) and quantizes `tokens` rows of `cols` floats for weights of
// type t (has_row_dot(t); the kind of preparation is traits(t).act) and group size `group`.
void prepare_activations(model::DType t, uint32_t group, const float* x, size_t tokens, size_t cols,
                         const float* input_scale, Activations& out);

// out[k] = sum over the row of w * x for token t0 + k, k < nt <= kTokenTile, every scale applied.
using RowDot = void (*)(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out);

}  // namespace fineserve::quant
