// The W8A8 integer GEMM (gemm/packed_w8a8.h): the repack loses nothing, every SIMD level's
// quantizer is prepare_activations' W8A8 step for step and its kernel bit-identical to the
// portable reference, which is within f32 rounding of a float64 product written out here from
// weight_format.h's row layout; linear() through it equals the per-row kernels it replaced and is
// batch invariant at every level (token counts across tiles and chunks, row counts that are not
// multiples of the 16-row groups, column counts that are not multiples of 32, 1 and 2 threads).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/thread_pool.h"
#include "gemm/gemm.h"
#include "gemm/packed_w8a8.h"
#include "ops/linear.h"
#include "quant/qdot.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"
#include "test_matrices.h"

using fineserve::model::DType;
using fineserve::model::TensorView;
using fineserve::test::Matrix;
namespace gemm = fineserve::gemm;
namespace quant = fineserve::quant;
namespace simd = fineserve::simd;

namespace {

Matrix make(size_t out, size_t in, uint32_t seed) {
  return fineserve::test::random_matrix(DType::W8A8, out, in, seed, [in](size_t r, std::vector<float>& row) {
    if (r == 1) row[in / 2] = 1.0f;  // q reaches +127 and -127
    if (r == 2) row[0] = -1.0f;
  });
}

std::vector<float> activations(size_t tokens, size_t in, uint32_t seed) {
  std::vector<float> x = fineserve::test::random_activations(tokens, in, seed, in);  // an all-zero token: sx = 0
  if (tokens > 1) x[in + 1] = 50.0f;  // an outlier: most of that token's q round to 0
  return x;
}

std::vector<simd::Level> levels() {
  std::vector<simd::Level> out;
  for (simd::Level l : simd::supported_levels()) {
    if (gemm::w8a8_kernels_for(l) != nullptr) out.push_back(l);
  }
  if (out.empty()) MESSAGE("no W8A8 GEMM kernels on this host: only the portable reference is checked");
  return out;
}

void check_same_acts(const gemm::W8A8Acts& got, const gemm::W8A8Acts& want) {
  CHECK(got.stride == want.stride);
  CHECK(got.q == want.q);
  CHECK(std::memcmp(got.scale.data(), want.scale.data(), 4 * want.scale.size()) == 0);
  CHECK(got.sum == want.sum);
}

}  // namespace

TEST_CASE("W8A8 GEMM: repacking keeps every byte of every row") {
  for (size_t in : {32u, 33u, 100u}) {
    for (size_t out : {1u, 16u, 37u}) {
      Matrix m = make(out, in, 5);
      auto p = gemm::pack_w8a8(m.view.data, out, in);
      const size_t rb = quant::row_bytes(DType::W8A8, in);
      std::vector<uint8_t> row(rb);
      for (size_t r = 0; r < out; ++r) {
        gemm::unpack_w8a8_row(*p, r, row.data());
        CHECK(std::memcmp(row.data(), m.bytes.data() + r * rb, rb) == 0);
      }
      CHECK(p->bytes.size() == p->groups() * (p->group_bytes + 64));
    }
  }
}

TEST_CASE("W8A8 GEMM: activations are prepare_activations' int8 per token, the same at every level") {
  for (size_t in : {33u, 160u, 172u}) {
    const size_t tokens = 5;
    CAPTURE(in);
    std::vector<float> x = activations(tokens, in, 9), scale(in);
    for (size_t i = 0; i < in; ++i) scale[i] = 0.5f + 0.01f * float(i);
    for (const float* s : {static_cast<const float*>(nullptr), static_cast<const float*>(scale.data())}) {
      gemm::W8A8Acts ref;
      gemm::w8a8_quantize_reference(x.data(), tokens, in, s, ref);
      quant::Activations qa;
      quant::prepare_activations(DType::W8A8, 0, x.data(), tokens, in, s, qa);
      REQUIRE(qa.stride == ref.stride);
      CHECK(std::memcmp(ref.q.data(), qa.q.data(), ref.q.size()) == 0);
      CHECK(std::memcmp(ref.scale.data(), qa.token_scale.data(), 4 * tokens) == 0);
      for (size_t t = 0; t < tokens; ++t) {
        int32_t sum = 0;
        for (size_t i = 0; i < in; ++i) sum += ref.q[t * ref.stride + i];
        CHECK(ref.sum[t] == sum);
      }
      for (simd::Level l : levels()) {
        const std::string level = simd::level_name(l);
        CAPTURE(level);
        gemm::W8A8Acts got;
        gemm::w8a8_kernels_for(l)->quantize(x.data(), tokens, in, s, got);
        check_same_acts(got, ref);
      }
    }
  }
}

TEST_CASE("W8A8 GEMM: each level's kernel is bit-identical to the reference, which matches float64") {
  for (size_t in : {64u, 100u}) {
    for (size_t out : {13u, 64u, 200u}) {
      const size_t tokens = 9;
      CAPTURE(in);
      CAPTURE(out);
      Matrix m = make(out, in, uint32_t(out + in));
      auto p = gemm::pack_w8a8(m.view.data, out, in);
      std::vector<float> x = activations(tokens, in, 3), bias(out);
      for (size_t r = 0; r < out; ++r) bias[r] = 0.01f * float(r);
      gemm::W8A8Acts a;
      gemm::w8a8_quantize_reference(x.data(), tokens, in, nullptr, a);
      std::vector<float> ref(tokens * out);
      gemm::w8a8_reference(*p, a, tokens, 0, out, bias.data(), ref.data(), out);
      // float64 from the row layout of weight_format.h: w = scale * q, x = sx * q_x.
      const size_t rb = quant::row_bytes(DType::W8A8, in);
      for (size_t tk = 0; tk < tokens; ++tk) {
        for (size_t r = 0; r < out; ++r) {
          const uint8_t* row = m.bytes.data() + r * rb;
          float sw;
          std::memcpy(&sw, row, 4);
          double dot = 0;
          for (size_t i = 0; i < in; ++i) dot += double(int8_t(row[16 + i])) * double(a.q[tk * a.stride + i]);
          const double want = dot * double(sw) * double(a.scale[tk]) + bias[r];
          CAPTURE(tk);
          CAPTURE(r);
          CHECK(std::fabs(ref[tk * out + r] - want) <= 1e-6 * (std::fabs(want) + std::fabs(bias[r])) + 1e-30);
        }
      }
      for (simd::Level l : levels()) {
        const std::string level = simd::level_name(l);
        CAPTURE(level);
        const gemm::W8A8Kernels& k = *gemm::w8a8_kernels_for(l);
        for (size_t nt = 1; nt <= tokens; ++nt) {
          CAPTURE(nt);
          std::vector<float> y(nt * out, -1.0f);
          k.gemm(*p, a, nt, 0, out, bias.data(), y.data(), out);
          CHECK(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) == 0);
          // A row block that starts past row 0 writes only its rows.
          if (out > 16) {
            std::vector<float> part(nt * out, -1.0f);
            k.gemm(*p, a, nt, 16, out, bias.data(), part.data(), out);
            for (size_t t = 0; t < nt; ++t) {
              CHECK(part[t * out + 15] == -1.0f);
              CHECK(std::memcmp(part.data() + t * out + 16, ref.data() + t * out + 16, 4 * (out - 16)) == 0);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("W8A8 GEMM: linear() equals the per-row kernels and is batch invariant, across tiles, chunks and threads") {
  const size_t max_tokens = 70;  // past the 64-token chunks and the 4- and 6-token tiles
  for (size_t in : {96u, 172u}) {
    for (size_t out : {40u, 200u}) {
      CAPTURE(in);
      CAPTURE(out);
      Matrix m = make(out, in, uint32_t(7 + out));
      std::vector<float> x = activations(max_tokens, in, 11), scale(in), bias(out);
      for (size_t i = 0; i < in; ++i) scale[i] = 0.75f + 0.005f * float(i);
      for (size_t r = 0; r < out; ++r) bias[r] = 0.1f - 0.001f * float(r);
      m.view.input_scale = scale.data();
      const TensorView b = fineserve::test::bias_view(bias);
      fineserve::engine::ThreadPool one(1), two(2);
      for (simd::Level l : levels()) {
        const std::string level = simd::level_name(l);
        CAPTURE(level);
        std::vector<float> alone(max_tokens * out), rows(max_tokens * out);
        for (size_t tk = 0; tk < max_tokens; ++tk) {
          fineserve::ops::linear(one, x.data() + tk * in, 1, m.view, &b, alone.data() + tk * out, l);
        }
        // The per-row kernels (FINESERVE_GEMM=0) compute the same integer sums and the same float
        // formula: equal outputs.
        fineserve::gemm::set_enabled(false);
        fineserve::ops::linear(one, x.data(), max_tokens, m.view, &b, rows.data(), l);
        fineserve::gemm::set_enabled(true);
        CHECK(std::memcmp(rows.data(), alone.data(), rows.size() * sizeof(float)) == 0);
        for (size_t tokens : {2u, 5u, 7u, 8u, 33u, 70u}) {
          for (fineserve::engine::ThreadPool* pool : {&one, &two}) {
            CAPTURE(tokens);
            CAPTURE(pool->size());
            std::vector<float> y(tokens * out);
            fineserve::ops::linear(*pool, x.data(), tokens, m.view, &b, y.data(), l);
            CHECK(std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)) == 0);
          }
        }
      }
    }
  }
}
