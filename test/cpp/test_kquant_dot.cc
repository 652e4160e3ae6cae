// The Q4_K / Q6_K x Q8_K integer dots (quant/kquant_dot.h):
//   - Q8_K activations: codes within half a step of x / d, the largest magnitude at -127, bsums
//     the sums of the codes;
//   - the portable kernel against a float64 sum of the reference-decoded weights times the
//     decoded activations (within f32 rounding of the per-super-block steps);
//   - every SIMD level bit-identical to the portable kernel, and each token's result the same
//     whatever else shares the call (batch invariance);
//   - linear() for Q4_K / Q6_K (the packed GEMM of gemm/packed_k.h, which reproduces these row dots)
//     gives the same bits as the kernel, input scale included.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "engine/thread_pool.h"
#include "ops/linear.h"
#include "quant/kquant_dot.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"
#include "test_matrices.h"

using namespace fineserve;
using model::DType;
using test::Matrix;
namespace kq = quant::kquant;

namespace {

Matrix make_matrix(DType t, size_t rows, size_t cols, uint32_t seed) {
  return test::random_matrix(t, rows, cols, seed, [](size_t r, std::vector<float>& row) {
    if (r % 3 == 0) {
      for (float& v : row) v += 0.02f;  // some rows off-centre (Q4_K mins)
    }
  });
}

std::vector<float> activations(size_t tokens, size_t cols, uint32_t seed) {
  return test::random_activations(tokens, cols, seed, 256);  // an all-zero super-block: d = 0
}

}  // namespace

TEST_CASE("kquant dot: Q8_K activations") {
  const size_t cols = 512, tokens = 3;
  std::vector<float> x = activations(tokens, cols, 1);
  kq::Q8K a;
  kq::quantize_q8_k(x.data(), tokens, cols, a);
  REQUIRE(a.blocks == 2);
  for (size_t i = 0; i < tokens * a.blocks; ++i) {
    CAPTURE(i);
    const float* xb = x.data() + i * 256;
    const int8_t* q = a.q.data() + i * 256;
    float amax = 0;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(xb[j]));
    if (amax == 0) {
      CHECK(a.d[i] == 0.0f);
      continue;
    }
    CHECK(std::fabs(a.d[i]) == doctest::Approx(amax / 127).epsilon(1e-6));
    bool extreme = false;
    for (int j = 0; j < 256; ++j) {
      CHECK(std::fabs(q[j] * (double)a.d[i] - xb[j]) <= 0.5 * std::fabs(a.d[i]) * (1 + 1e-5));
      extreme |= q[j] == -127;
    }
    CHECK(extreme);
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[16 * g + l];
      CHECK(a.bsums[i * 16 + g] == s);
    }
  }
}

TEST_CASE("kquant dot: float64 reference, every level bit-identical, batch invariant, linear() takes it") {
  const size_t rows = 19;
  engine::ThreadPool pool(2);
  for (DType t : {DType::Q4_K, DType::Q6_K}) {
    for (size_t cols : {256u, 768u}) {
      const std::string type = model::dtype_name(t);
      CAPTURE(type);
      CAPTURE(cols);
      Matrix m = make_matrix(t, rows, cols, static_cast<uint32_t>(cols));
      const size_t rb = quant::row_bytes(t, cols);
      const size_t tokens = 7;
      std::vector<float> x = activations(tokens, cols, 9);
      kq::Q8K a;
      kq::quantize_q8_k(x.data(), tokens, cols, a);
      std::vector<float> bias(rows);
      for (size_t r = 0; r < rows; ++r) bias[r] = 0.25f * static_cast<float>(r % 5) - 0.5f;

      std::vector<float> base(tokens * rows);
      kq::dot_kernel(t, simd::Level::Baseline)(m.bytes.data(), rb, a, 0, rows, bias.data(), base.data(), rows);
      std::vector<float> w(cols);
      for (size_t r = 0; r < rows; ++r) {
        quant::dequantize_row(t, m.bytes.data() + r * rb, cols, 0, w.data());
        for (size_t k = 0; k < tokens; ++k) {
          long double ref = bias[r], mag = std::fabs(bias[r]);
          for (size_t i = 0; i < cols; ++i) {
            const long double xq = (long double)a.q[k * cols + i] * a.d[k * a.blocks + i / 256];
            ref += (long double)w[i] * xq;
            mag += std::fabs((long double)w[i] * xq);
          }
          CAPTURE(r);
          CAPTURE(k);
          CHECK(std::fabs(base[k * rows + r] - (double)ref) <= 1e-5 * (double)mag + 1e-30);
        }
      }
      for (simd::Level level : simd::supported_levels()) {
        CAPTURE(simd::level_name(level));
        std::vector<float> y(tokens * rows);
        kq::dot_kernel(t, level)(m.bytes.data(), rb, a, 0, rows, bias.data(), y.data(), rows);
        CHECK(std::memcmp(y.data(), base.data(), y.size() * sizeof(float)) == 0);
        // One token alone, and a row range split differently: the same bits.
        for (size_t k = 0; k < tokens; ++k) {
          kq::Q8K one;
          kq::quantize_q8_k(x.data() + k * cols, 1, cols, one);
          std::vector<float> y1(rows);
          kq::dot_kernel(t, level)(m.bytes.data(), rb, one, 0, 7, bias.data(), y1.data(), rows);
          kq::dot_kernel(t, level)(m.bytes.data(), rb, one, 7, rows, bias.data(), y1.data(), rows);
          CHECK(std::memcmp(y1.data(), base.data() + k * rows, rows * sizeof(float)) == 0);
        }
        // linear() at this level: the same kernel over its own row blocks.
        const model::TensorView b = test::bias_view(bias);
        std::vector<float> yl(tokens * rows);
        ops::linear(pool, x.data(), tokens, m.view, &b, yl.data(), level);
        CHECK(std::memcmp(yl.data(), base.data(), yl.size() * sizeof(float)) == 0);
        // With an input scale: the same as scaling x first.
        std::vector<float> scale(cols), xs(x);
        for (size_t i = 0; i < cols; ++i) scale[i] = 0.5f + static_cast<float>(i % 7) / 4;
        for (size_t i = 0; i < xs.size(); ++i) xs[i] *= scale[i % cols];
        model::TensorView ws = m.view;
        ws.input_scale = scale.data();
        std::vector<float> y_scaled(tokens * rows), y_pre(tokens * rows);
        ops::linear(pool, x.data(), tokens, ws, nullptr, y_scaled.data(), level);
        ops::linear(pool, xs.data(), tokens, m.view, nullptr, y_pre.data(), level);
        CHECK(std::memcmp(y_scaled.data(), y_pre.data(), y_pre.size() * sizeof(float)) == 0);
      }
    }
  }
}
