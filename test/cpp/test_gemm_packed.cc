// The packed integer GEMM of Q8_0 / Q4_0 (gemm/packed.h): the repack loses nothing, every SIMD
// level's quantizer and kernels are bit-identical to the portable reference, that reference is
// within f32 accumulation error of a float64 product written out here from the file's own block
// layout, and linear() through it is batch invariant at every level (token counts across the
// tile and chunk boundaries, row counts that are not multiples of the 16-row groups, 1 and 2
// threads).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/thread_pool.h"
#include "gemm/gemm.h"
#include "gemm/packed.h"
#include "ops/linear.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"
#include "simd/half.h"

using fineserve::model::DType;
using fineserve::model::TensorView;
namespace gemm = fineserve::gemm;
namespace quant = fineserve::quant;
namespace simd = fineserve::simd;

namespace {

struct Matrix {
  std::vector<uint8_t> bytes;
  TensorView view;
};

Matrix make(DType t, size_t out, size_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  Matrix m;
  const uint64_t rb = quant::row_bytes(t, in, 0);
  m.bytes.assign(rb * out, 0);
  std::vector<float> row(in);
  for (size_t r = 0; r < out; ++r) {
    for (float& v : row) v = dist(rng);
    if (r == 1) row[3] = 1.0f;  // a block whose weights reach -128 / +127 (Q8_0) and 0 / 15 (Q4_0)
    if (r == 2) row[5] = -1.0f;
    quant::quantize_row(t, row.data(), in, 0, m.bytes.data() + r * rb);
  }
  m.view.name = "w";
  m.view.dtype = t;
  m.view.shape = {out, in};
  m.view.data = m.bytes.data();
  m.view.bytes = m.bytes.size();
  return m;
}

std::vector<float> activations(size_t tokens, size_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(tokens * in);
  for (float& v : x) v = dist(rng);
  for (size_t i = 0; i < 32 && i < in; ++i) x[i] = 0.0f;  // an all-zero block: d = 0
  return x;
}

// Weight element i of a row in the file's layout (weight_format.h), written out from the spec.
double weight(DType t, const uint8_t* row, size_t i) {
  const size_t b = i / 32, j = i % 32;
  uint16_t h;
  if (t == DType::Q8_0) {
    std::memcpy(&h, row + 34 * b, 2);
    return double(simd::f16_to_f32_scalar(h)) * double(int8_t(row[34 * b + 2 + j]));
  }
  std::memcpy(&h, row + 18 * b, 2);
  const uint8_t q = row[18 * b + 2 + j % 16];
  return double(simd::f16_to_f32_scalar(h)) * double(int((j < 16 ? q & 15 : q >> 4)) - 8);
}

std::vector<simd::Level> packed_levels() {
  std::vector<simd::Level> out;
  for (simd::Level l : simd::supported_levels()) {
    if (gemm::packed_kernels_for(l) != nullptr) out.push_back(l);
  }
  if (out.empty()) MESSAGE("no packed GEMM kernels on this host: only the portable reference is checked");
  return out;
}

const DType kTypes[] = {DType::Q8_0, DType::Q4_0};

}  // namespace

TEST_CASE("packed GEMM: repacking keeps every byte of every row") {
  for (DType t : kTypes) {
    for (size_t out : {1u, 16u, 37u}) {
      Matrix m = make(t, out, 96, 5);
      auto p = gemm::pack(t, m.view.data, out, 96);
      const size_t rb = quant::row_bytes(t, 96, 0);
      std::vector<uint8_t> row(rb);
      for (size_t r = 0; r < out; ++r) {
        gemm::unpack_row(*p, r, row.data());
        CHECK(std::memcmp(row.data(), m.bytes.data() + r * rb, rb) == 0);
      }
    }
  }
}

TEST_CASE("packed GEMM: activations are llama.cpp's Q8_0 blocks, the same at every level") {
  const size_t tokens = 5, in = 160;
  std::vector<float> x = activations(tokens, in, 9);
  gemm::PackedActs ref;
  gemm::quantize_reference(x.data(), tokens, in, ref);
  quant::Activations qa;
  quant::prepare_activations(DType::Q8_0, 0, x.data(), tokens, in, nullptr, qa);
  CHECK(std::memcmp(ref.q.data(), qa.q.data(), ref.q.size()) == 0);
  CHECK(std::memcmp(ref.d.data(), qa.block_scale.data(), 4 * ref.d.size()) == 0);
  for (size_t at = 0; at < tokens * in / 32; ++at) {
    int32_t s = 0;
    for (size_t j = 0; j < 32; ++j) s += ref.q[at * 32 + j];
    CHECK(ref.sum[at] == s);
  }
  for (simd::Level l : packed_levels()) {
    const std::string level = simd::level_name(l);
        CAPTURE(level);
    gemm::PackedActs got;
    gemm::packed_kernels_for(l)->quantize(x.data(), tokens, in, got);
    CHECK(got.q == ref.q);
    CHECK(std::memcmp(got.d.data(), ref.d.data(), 4 * ref.d.size()) == 0);
    CHECK(got.sum == ref.sum);
  }
}

TEST_CASE("packed GEMM: each level's kernel is bit-identical to the reference, which matches float64") {
  for (DType t : kTypes) {
    for (size_t out : {13u, 64u, 100u}) {
      const size_t in = 256, tokens = 7;
      const std::string type = fineserve::model::dtype_name(t);
      CAPTURE(type);
      CAPTURE(out);
      Matrix m = make(t, out, in, uint32_t(out));
      auto p = gemm::pack(t, m.view.data, out, in);
      std::vector<float> x = activations(tokens, in, 3), bias(out);
      for (size_t r = 0; r < out; ++r) bias[r] = 0.01f * float(r);
      gemm::PackedActs a;
      gemm::quantize_reference(x.data(), tokens, in, a);
      std::vector<float> ref(tokens * out);
      gemm::packed_reference(*p, a, tokens, 0, out, bias.data(), ref.data(), out);
      const size_t rb = quant::row_bytes(t, in, 0);
      for (size_t tk = 0; tk < tokens; ++tk) {
        for (size_t r = 0; r < out; ++r) {
          long double want = bias[r], mag = std::fabs(bias[r]);
          for (size_t i = 0; i < in; ++i) {
            const size_t at = tk * a.blocks + i / 32;
            const long double v = weight(t, m.bytes.data() + r * rb, i) * double(a.q[at * 32 + i % 32]) * double(a.d[at]);
            want += v;
            mag += std::fabs(v);
          }
          CAPTURE(tk);
          CAPTURE(r);
          CHECK(std::fabs(ref[tk * out + r] - double(want)) <= 1e-5 * double(mag) + 1e-30);
        }
      }
      for (simd::Level l : packed_levels()) {
        const std::string level = simd::level_name(l);
        CAPTURE(level);
        const gemm::PackedKernels& k = *gemm::packed_kernels_for(l);
        for (size_t nt = 1; nt <= tokens; ++nt) {
          CAPTURE(nt);
          std::vector<float> y(nt * out, -1.0f);
          gemm::packed_kernel(k, t)(*p, a, nt, 0, out, bias.data(), y.data(), out);
          CHECK(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("packed GEMM: linear() is batch invariant at every level, across tiles, chunks and threads") {
  const size_t in = 128, max_tokens = 70;  // past the 32-token chunks and the 4-token tiles
  for (DType t : kTypes) {
    for (size_t out : {40u, 200u}) {
      const std::string type = fineserve::model::dtype_name(t);
      CAPTURE(type);
      CAPTURE(out);
      Matrix m = make(t, out, in, uint32_t(7 + out));
      std::vector<float> x = activations(max_tokens, in, 11);
      fineserve::engine::ThreadPool one(1), two(2);
      for (simd::Level l : packed_levels()) {
        const std::string level = simd::level_name(l);
        CAPTURE(level);
        std::vector<float> alone(max_tokens * out);
        for (size_t tk = 0; tk < max_tokens; ++tk) {
          fineserve::ops::linear(one, x.data() + tk * in, 1, m.view, nullptr, alone.data() + tk * out, l);
        }
        for (size_t tokens : {2u, 5u, 8u, 33u, 70u}) {
          for (fineserve::engine::ThreadPool* pool : {&one, &two}) {
            CAPTURE(tokens);
            CAPTURE(pool->size());
            std::vector<float> y(tokens * out);
            fineserve::ops::linear(*pool, x.data(), tokens, m.view, nullptr, y.data(), l);
            CHECK(std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)) == 0);
          }
        }
      }
    }
  }
}
