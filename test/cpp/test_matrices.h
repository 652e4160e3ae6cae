// Random weight matrices, activations and bias views for the linear() / GEMM / dot tests
// (test_gemm.cc, test_gemm_packed.cc, test_gemm_w8a8.cc, test_kquant_dot.cc), so that every
// test draws its inputs the same way: weights N(0, 0.05) row by row from one seed, activations
// N(0, 1). Each test keeps its own seeds and its own edits (extreme weights, zero blocks,
// outliers) on top.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "model/tensor.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/half.h"

namespace fineserve::test {

struct Matrix {
  std::vector<uint8_t> bytes;
  model::TensorView view;  // "w", {out, in}, over `bytes`
};

// The weight draws of one seed. A test that draws more after the rows keeps this object: the
// distribution holds a second value of each pair it computes, so a new one would draw others.
struct WeightDraws {
  explicit WeightDraws(uint32_t seed) : rng(seed) {}
  float operator()() { return dist(rng); }
  std::mt19937 rng;
  std::normal_distribution<float> dist{0.0f, 0.05f};
};

struct KeepRow {
  void operator()(size_t, std::vector<float>&) const {}
};

// An out x in matrix of `t` (group: W4A16 / W4A8's, else 0). Row r is `in` draws, then
// edit(r, row), then stored: F32 as is, F16 / BF16 rounded, every other type through quantize_row.
template <class Edit = KeepRow>
Matrix random_matrix(model::DType t, size_t out, size_t in, WeightDraws& draws, uint32_t group = 0, Edit edit = {}) {
  using model::DType;
  Matrix m;
  const uint64_t rb = quant::row_bytes(t, in, group);
  m.bytes.assign(rb * out, 0);
  std::vector<float> row(in);
  for (size_t r = 0; r < out; ++r) {
    for (float& v : row) v = draws();
    edit(r, row);
    uint8_t* dst = m.bytes.data() + r * rb;
    if (t == DType::F32) {
      std::memcpy(dst, row.data(), 4 * in);
    } else if (t == DType::F16 || t == DType::BF16) {
      for (size_t i = 0; i < in; ++i) {
        const uint16_t h = t == DType::F16 ? simd::f32_to_f16_scalar(row[i]) : simd::f32_to_bf16_scalar(row[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
    } else {
      quant::quantize_row(t, row.data(), in, group, dst);
    }
  }
  m.view.name = "w";
  m.view.dtype = t;
  m.view.shape = {out, in};
  m.view.data = m.bytes.data();
  m.view.bytes = m.bytes.size();
  m.view.group = group;
  return m;
}

template <class Edit = KeepRow>
Matrix random_matrix(model::DType t, size_t out, size_t in, uint32_t seed, Edit edit = {}) {
  WeightDraws draws(seed);
  return random_matrix(t, out, in, draws, 0, edit);
}

// tokens x in activations, N(0, 1) from `seed`, the first `zeros` of them 0 (an all-zero block,
// super-block or token: a zero scale).
inline std::vector<float> random_activations(size_t tokens, size_t in, uint32_t seed, size_t zeros = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(tokens * in);
  for (float& v : x) v = dist(rng);
  for (size_t i = 0; i < zeros && i < x.size(); ++i) x[i] = 0.0f;
  return x;
}

// A bias vector as linear() takes it: an F32 view "b" over `bias`, which must outlive it.
inline model::TensorView bias_view(const std::vector<float>& bias) {
  model::TensorView b;
  b.name = "b";
  b.shape = {bias.size()};
  b.data = reinterpret_cast<const uint8_t*>(bias.data());
  b.bytes = 4 * bias.size();
  return b;
}

}  // namespace fineserve::test
