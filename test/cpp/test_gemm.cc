// The register-blocked GEMM of linear() (gemm/gemm.h): each token's outputs are bit-identical
// whether it runs alone or among others (batch invariance, for token counts and row counts that
// are not multiples of the tile, on one thread or two), and every output is within f32
// accumulation error of a float64 product of the decoded weights with the activations as the
// format quantizes them, written out here independently of the kernels.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/thread_pool.h"
#include "gemm/gemm.h"
#include "ops/linear.h"
#include "quant/fp8.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"
#include "simd/half.h"
#include "test_matrices.h"

using fineserve::model::DType;
using fineserve::model::TensorView;
using fineserve::test::Matrix;
namespace quant = fineserve::quant;
namespace simd = fineserve::simd;

namespace {

// The block types the GEMM covers; they quantize the activations to Q8_0 blocks.
bool model_is_block(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }
bool e4m3_acts(DType t) { return t == DType::FP8 || t == DType::W4A8; }
uint32_t group_of(DType t, size_t in) {
  return t == DType::W4A16 || t == DType::W4A8 ? (in >= 128 ? 64 : 32) : 0;
}

bool kquant(DType t) { return t == DType::Q4_K || t == DType::Q6_K; }

Matrix make_matrix(DType t, size_t out, size_t in, uint32_t seed) {
  fineserve::test::WeightDraws draws(seed);
  Matrix m = fineserve::test::random_matrix(t, out, in, draws, group_of(t, in));
  // Q4_K / Q6_K: random blocks written over the quantized rows, as this test has always had them
  // (drawn after the rows from the same draws, so the same inputs).
  if (kquant(t)) {
    std::uniform_int_distribution<int> byte(0, 255);
    for (uint8_t& v : m.bytes) v = uint8_t(byte(draws.rng));
    const size_t blk = t == DType::Q4_K ? 144 : 210;
    for (size_t at = 0; at < m.bytes.size(); at += blk) {  // finite super-block scales
      for (size_t off : t == DType::Q4_K ? std::vector<size_t>{0, 2} : std::vector<size_t>{208}) {
        const uint16_t h = simd::f32_to_f16_scalar(std::fabs(draws()) * 0.05f);
        std::memcpy(&m.bytes[at + off], &h, 2);
      }
    }
  }
  return m;
}

// Q8_0 activations as weight_format.h defines them: d = amax / 127 rounded to f16,
// q = round-half-even(x * 127 / amax); returns d * q.
std::vector<float> q8_blocks(const float* x, size_t n) {
  std::vector<float> out(n);
  for (size_t b = 0; b < n / 32; ++b) {
    float amax = 0.0f;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(amax / 127.0f));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (size_t j = 0; j < 32; ++j) out[32 * b + j] = std::nearbyint(x[32 * b + j] * id) * d;
  }
  return out;
}

// Q4_K / Q6_K activations with the GEMM on (quant/kquant_dot.h): Q8_K blocks of 256, the value of
// largest magnitude `max` at -127, q = min(127, round-half-even(x * (-127 / max))); returns q * d.
std::vector<float> q8k_blocks(const float* x, size_t n) {
  std::vector<float> out(n, 0.0f);
  for (size_t b = 0; b < n / 256; ++b) {
    float amax = 0.0f, max = 0.0f;
    for (size_t j = 0; j < 256; ++j) {
      if (std::fabs(x[256 * b + j]) > amax) amax = std::fabs(x[256 * b + j]), max = x[256 * b + j];
    }
    if (amax == 0.0f) continue;
    const float inv = -127.0f / max;
    for (size_t j = 0; j < 256; ++j) out[256 * b + j] = std::min(127.0f, std::nearbyint(inv * x[256 * b + j])) * (1 / inv);
  }
  return out;
}

// FP8 / W4A8 activations: per token e4m3(x / sx) * sx with sx = amax / 448.
std::vector<float> e4m3_token(const float* x, size_t n) {
  float amax = 0.0f;
  for (size_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float sx = amax / quant::kFp8Max;
  std::vector<float> out(n, 0.0f);
  for (size_t i = 0; i < n && sx != 0.0f; ++i) out[i] = quant::fp8_to_f32(quant::f32_to_fp8(x[i] / sx)) * sx;
  return out;
}

struct Shape {
  DType t;
  size_t in;
};
const Shape kShapes[] = {{DType::F32, 172}, {DType::F32, 64}, {DType::F16, 172}, {DType::F16, 48}, {DType::BF16, 100},
                         {DType::Q8_0, 96}, {DType::Q4_0, 160}, {DType::Q4_K, 256},
                         {DType::Q6_K, 512}, {DType::W4A16, 172}, {DType::W4A8, 172}, {DType::FP8, 172},
                         {DType::FP8, 33}, {DType::W4A16, 33}};

// Without GEMM kernels at this level (a baseline-only CPU, FINESERVE_SIMD=baseline) the same
// checks hold for the per-row path linear() keeps there.
void say_path() {
  const simd::Level level = simd::active().level;
  if (fineserve::gemm::kernels_for(level) == nullptr) {
    const std::string why = std::string("no GEMM kernels at SIMD level ") + simd::level_name(level) + ": checking the per-row path";
    MESSAGE(why);
  }
}

}  // namespace

TEST_CASE("GEMM: a token's outputs are bit-identical alone and in a batch of any size") {
  say_path();
  for (const Shape& s : kShapes) {
    for (size_t out : {13u, 50u}) {
      const std::string type = fineserve::model::dtype_name(s.t);
      CAPTURE(type);
      CAPTURE(s.in);
      CAPTURE(out);
      Matrix m = make_matrix(s.t, out, s.in, uint32_t(s.in + out));
      std::mt19937 rng(7);
      std::normal_distribution<float> dist(0.0f, 1.0f);
      std::vector<float> scale(s.in), bias(out);
      for (float& v : scale) v = 0.5f + std::fabs(dist(rng));
      for (float& v : bias) v = dist(rng);
      m.view.input_scale = scale.data();
      const TensorView b = fineserve::test::bias_view(bias);
      const size_t max_tokens = 13;
      std::vector<float> x(max_tokens * s.in);
      for (float& v : x) v = dist(rng);
      fineserve::engine::ThreadPool one(1), two(2);
      // Each token alone, on one thread.
      std::vector<float> alone(max_tokens * out);
      for (size_t t = 0; t < max_tokens; ++t) {
        fineserve::ops::linear(one, x.data() + t * s.in, 1, m.view, &b, alone.data() + t * out);
      }
      for (size_t tokens : {2u, 3u, 5u, 7u, 13u}) {
        for (fineserve::engine::ThreadPool* pool : {&one, &two}) {
          CAPTURE(tokens);
          CAPTURE(pool->size());
          std::vector<float> y(tokens * out);
          fineserve::ops::linear(*pool, x.data(), tokens, m.view, &b, y.data());
          CHECK(std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("GEMM: every output within f32 accumulation error of the float64 product") {
  say_path();
  for (const Shape& s : kShapes) {
    const size_t out = 37, tokens = 11;
    const std::string type = fineserve::model::dtype_name(s.t);
    CAPTURE(type);
    CAPTURE(s.in);
    Matrix m = make_matrix(s.t, out, s.in, 3);
    const std::vector<float> x = fineserve::test::random_activations(tokens, s.in, 11);
    std::vector<float> y(tokens * out), old(tokens * out), wrow(s.in);
    fineserve::engine::ThreadPool pool(1);
    fineserve::ops::linear(pool, x.data(), tokens, m.view, nullptr, y.data());
    fineserve::gemm::set_enabled(false);
    fineserve::ops::linear(pool, x.data(), tokens, m.view, nullptr, old.data());
    fineserve::gemm::set_enabled(true);
    for (size_t t = 0; t < tokens; ++t) {
      const float* xt = x.data() + t * s.in;
      const std::vector<float> xq = model_is_block(s.t) ? q8_blocks(xt, s.in)
                                    : kquant(s.t)       ? q8k_blocks(xt, s.in)
                                    : e4m3_acts(s.t)    ? e4m3_token(xt, s.in)
                                                        : std::vector<float>(xt, xt + s.in);
      for (size_t r = 0; r < out; ++r) {
        const uint32_t g = m.view.group;
        quant::dequantize_row(s.t, m.view.data + r * quant::row_bytes(s.t, s.in, g), s.in, g, wrow.data());
        long double ref = 0, mag = 0, ref_f32 = 0, mag_f32 = 0;
        for (size_t i = 0; i < s.in; ++i) {
          ref += (long double)wrow[i] * xq[i];
          mag += std::fabs((long double)wrow[i] * xq[i]);
          ref_f32 += (long double)wrow[i] * xt[i];
          mag_f32 += std::fabs((long double)wrow[i] * xt[i]);
        }
        CAPTURE(t);
        CAPTURE(r);
        CHECK(std::fabs(y[t * out + r] - (double)ref) <= 1e-5 * (double)mag + 1e-30);
        // The per-row kernels it replaced (FINESERVE_GEMM=0) agree within the same bound (K-quants
        // there keep f32 activations).
        if (kquant(s.t)) {
          CHECK(std::fabs(old[t * out + r] - (double)ref_f32) <= 1e-5 * (double)mag_f32 + 1e-30);
        } else {
          CHECK(std::fabs(old[t * out + r] - (double)ref) <= 1e-5 * (double)mag + 1e-30);
        }
      }
    }
  }
}
