// linear() on every weight type against two independent references: a long double product of the
// dequantized weights with the activations quantized as the format defines (bound: f32
// accumulation), and the unquantized f32 product (bound: the weight and activation step sizes).
// Every SIMD level this CPU runs must agree with the baseline within the f32 bound.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/thread_pool.h"
#include "ops/linear.h"
#include "quant/fp8.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"

using fineserve::model::DType;
using fineserve::model::TensorView;
namespace quant = fineserve::quant;

namespace {

float f16_round(float v) { return static_cast<float>(static_cast<_Float16>(v)); }

struct Case {
  DType t;
  size_t in, out;
  uint32_t group;
};

struct Weights {
  std::vector<float> original;  // what was quantized (empty for the K-quants: random bytes)
  std::vector<uint8_t> bytes;
  TensorView view;
};

Weights make_weights(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  Weights w;
  const uint64_t rb = quant::row_bytes(c.t, c.in, c.group);
  w.bytes.assign(rb * c.out, 0);
  if (c.t == DType::Q4_K || c.t == DType::Q6_K) {
    std::uniform_int_distribution<int> byte(0, 255);
    for (uint8_t& b : w.bytes) b = uint8_t(byte(rng));
    const size_t blk = c.t == DType::Q4_K ? 144 : 210;
    for (size_t at = 0; at < w.bytes.size(); at += blk) {
      // Sane f16 super-block scales (random bytes could be Inf/NaN).
      for (size_t off : c.t == DType::Q4_K ? std::vector<size_t>{0, 2} : std::vector<size_t>{208}) {
        _Float16 h = static_cast<_Float16>(std::fabs(dist(rng)) * 0.05f);
        std::memcpy(&w.bytes[at + off], &h, 2);
      }
    }
  } else {
    w.original.resize(c.in * c.out);
    for (float& v : w.original) v = dist(rng);
    for (size_t r = 0; r < c.out; ++r) {
      const float* src = &w.original[r * c.in];
      uint8_t* dst = &w.bytes[r * rb];
      if (c.t == DType::F32) {
        std::memcpy(dst, src, 4 * c.in);
      } else if (c.t == DType::F16 || c.t == DType::BF16) {
        for (size_t i = 0; i < c.in; ++i) {
          uint16_t h;
          if (c.t == DType::F16) {
            _Float16 v = static_cast<_Float16>(src[i]);
            std::memcpy(&h, &v, 2);
          } else {
            uint32_t bits;
            std::memcpy(&bits, &src[i], 4);
            h = uint16_t((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
          }
          std::memcpy(dst + 2 * i, &h, 2);
        }
      } else {
        quant::quantize_row(c.t, src, c.in, c.group, dst);
      }
    }
  }
  w.view.name = "w";
  w.view.dtype = c.t;
  w.view.shape = {c.out, c.in};
  w.view.data = w.bytes.data();
  w.view.bytes = w.bytes.size();
  w.view.group = c.group;
  return w;
}

// The activations as each format defines them (weight_format.h), written out here; returns the
// quantized x and the half step of each element.
void quantize_x(DType t, const std::vector<float>& x, std::vector<float>& xq, std::vector<float>& half_step) {
  const size_t n = x.size();
  xq = x;
  half_step.assign(n, 0.0f);
  float amax = 0.0f;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  if (t == DType::Q8_0 || t == DType::Q4_0) {
    for (size_t b = 0; b < n / 32; ++b) {
      float bmax = 0.0f;
      for (size_t j = 0; j < 32; ++j) bmax = std::max(bmax, std::fabs(x[32 * b + j]));
      const float d = f16_round(bmax / 127.0f), id = bmax != 0.0f ? 127.0f / bmax : 0.0f;
      for (size_t j = 0; j < 32; ++j) {
        xq[32 * b + j] = std::nearbyint(x[32 * b + j] * id) * d;
        half_step[32 * b + j] = 0.5f * d + 127 * d / 2048;  // f16 d, as in test_quant_formats
      }
    }
  } else if (t == DType::Q4_K || t == DType::Q6_K) {  // Q8_K blocks of 256 (quant/kquant_dot.h)
    for (size_t b = 0; b < n / 256; ++b) {
      float bmax = 0.0f, max = 0.0f;
      for (size_t j = 0; j < 256; ++j) {
        if (std::fabs(x[256 * b + j]) > bmax) bmax = std::fabs(x[256 * b + j]), max = x[256 * b + j];
      }
      const float inv = bmax != 0.0f ? -127.0f / max : 0.0f;
      for (size_t j = 0; j < 256; ++j) {
        xq[256 * b + j] = inv != 0.0f ? std::min(127.0f, std::nearbyint(inv * x[256 * b + j])) * (1 / inv) : 0.0f;
        half_step[256 * b + j] = 0.5f * bmax / 127;
      }
    }
  } else if (t == DType::W8A8) {
    const float sx = amax / 127.0f;
    for (size_t i = 0; i < n; ++i) {
      xq[i] = sx != 0.0f ? std::nearbyint(x[i] / sx) * sx : 0.0f;
      half_step[i] = 0.5f * sx;
    }
  } else if (t == DType::FP8 || t == DType::W4A8) {
    const float sx = amax / quant::kFp8Max;
    for (size_t i = 0; i < n; ++i) {
      xq[i] = sx != 0.0f ? quant::fp8_to_f32(quant::f32_to_fp8(x[i] / sx)) * sx : 0.0f;
      half_step[i] = std::fabs(x[i]) / 16 + sx / 1024;  // 3 mantissa bits; subnormal step 2^-9
    }
  }
}

// Half a weight step of element i of row r (from the stored scales), for the f32 comparison.
float weight_half_step(const Case& c, const Weights& w, size_t r, size_t i) {
  const uint8_t* row = w.bytes.data() + r * quant::row_bytes(c.t, c.in, c.group);
  auto f16 = [](const uint8_t* p) {
    _Float16 h;
    std::memcpy(&h, p, 2);
    return std::fabs(static_cast<float>(h));
  };
  auto f32 = [](const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  };
  const float v = std::fabs(w.original[r * c.in + i]);
  switch (c.t) {
    case DType::F16: return v / 2048;
    case DType::BF16: return v / 256;
    case DType::Q8_0: return 0.57f * f16(row + 34 * (i / 32));
    case DType::Q4_0: return 1.01f * f16(row + 18 * (i / 32));  // one side may clip by a step
    case DType::W8A8: return 0.5f * f32(row);
    case DType::FP8: return v / 16 + f32(row) / 1024;
    case DType::W4A16: return 0.5f * f16(row + 4 * (i / c.group)) + (f16(row + 4 * (i / c.group) + 2) + 15 * f16(row + 4 * (i / c.group))) / 1024;
    case DType::W4A8: return 0.5f * quant::fp8_to_f32(row[4 + i / c.group]) * f32(row);
    default: return 0.0f;
  }
}

void check_case(const Case& c, size_t tokens, bool with_bias, bool with_input_scale) {
  CAPTURE(fineserve::model::dtype_name(c.t));
  CAPTURE(c.in);
  CAPTURE(tokens);
  CAPTURE(with_bias);
  CAPTURE(with_input_scale);
  Weights w = make_weights(c, uint32_t(c.in * 31 + tokens));
  std::mt19937 rng(uint32_t(tokens * 977 + c.in));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(tokens * c.in), bias(c.out), scale(c.in);
  for (float& v : x) v = dist(rng);
  for (float& v : bias) v = dist(rng);
  for (float& v : scale) v = 0.5f + std::fabs(dist(rng));
  if (with_input_scale) w.view.input_scale = scale.data();
  TensorView b;
  b.name = "b";
  b.shape = {c.out};
  b.data = reinterpret_cast<const uint8_t*>(bias.data());
  b.bytes = 4 * c.out;

  fineserve::engine::ThreadPool pool(2);
  std::vector<float> base(tokens * c.out);
  fineserve::ops::linear(pool, x.data(), tokens, w.view, with_bias ? &b : nullptr, base.data(),
                         fineserve::simd::Level::Baseline);

  std::vector<float> wrow(c.in);
  std::vector<double> magnitude(tokens * c.out);  // sum |w x| (+ |bias|) per output
  double worst_fmt = 0, worst_f32 = 0;
  for (size_t t = 0; t < tokens; ++t) {
    std::vector<float> xt(x.begin() + t * c.in, x.begin() + (t + 1) * c.in), xq, hx;
    if (with_input_scale)
      for (size_t i = 0; i < c.in; ++i) xt[i] *= scale[i];
    quantize_x(c.t, xt, xq, hx);
    for (size_t r = 0; r < c.out; ++r) {
      quant::dequantize_row(c.t, w.bytes.data() + r * quant::row_bytes(c.t, c.in, c.group), c.in, c.group, wrow.data());
      long double ref = with_bias ? bias[r] : 0.0L, mag = with_bias ? std::fabs(bias[r]) : 0.0L;
      long double exact = ref, step_bound = 0;
      for (size_t i = 0; i < c.in; ++i) {
        ref += (long double)wrow[i] * xq[i];
        mag += std::fabs((long double)wrow[i] * xq[i]);
        if (!w.original.empty()) {
          const long double wo = w.original[r * c.in + i];
          exact += wo * xt[i];
          const long double dw = weight_half_step(c, w, r, i);
          step_bound += dw * std::fabs(xt[i]) + std::fabs(wo) * hx[i] + dw * hx[i];
        }
      }
      const double y = base[t * c.out + r];
      magnitude[t * c.out + r] = (double)mag;
      // f32 accumulation: well under 1e-5 of sum |w x| for rows of a few hundred terms.
      const double fmt_err = std::fabs(y - (double)ref) / (double)(mag + 1e-30L);
      worst_fmt = std::max(worst_fmt, fmt_err);
      CHECK(std::fabs(y - (double)ref) <= 1e-5 * (double)mag + 1e-30);
      if (!w.original.empty()) {
        worst_f32 = std::max(worst_f32, std::fabs(y - (double)exact) / (double)(step_bound + 1e-5L * mag + 1e-30L));
        CHECK(std::fabs(y - (double)exact) <= (double)(step_bound + 1e-5L * mag) + 1e-30);
      }
    }
  }
  // Every wider level agrees with the baseline within the f32 bound.
  for (fineserve::simd::Level level : fineserve::simd::supported_levels()) {
    std::vector<float> y(tokens * c.out);
    fineserve::ops::linear(pool, x.data(), tokens, w.view, with_bias ? &b : nullptr, y.data(), level);
    for (size_t i = 0; i < y.size(); ++i) {
      CAPTURE(fineserve::simd::level_name(level));
      // Both differ from the exact product by at most 1e-5 of sum |w x| (checked above).
      CHECK(std::fabs(y[i] - base[i]) <= 2e-5 * magnitude[i]);
    }
  }
  if (tokens == 17) {
    MESSAGE(std::string(fineserve::model::dtype_name(c.t)), " in=", c.in, " tokens=17: worst error / f32 bound ",
            worst_fmt / 1e-5, ", worst error / step bound ", worst_f32);
  }
}

}  // namespace

TEST_CASE("linear on every weight type tracks its format's reference and the f32 product") {
  const Case cases[] = {
      {DType::F32, 64, 9, 0},    {DType::F16, 64, 9, 0},     {DType::BF16, 64, 9, 0},
      {DType::Q8_0, 96, 9, 0},   {DType::Q4_0, 96, 9, 0},    {DType::Q4_K, 256, 9, 0},
      {DType::Q6_K, 512, 9, 0},  {DType::W8A8, 172, 9, 0},   {DType::W8A8, 33, 5, 0},
      {DType::FP8, 172, 9, 0},   {DType::FP8, 33, 5, 0},     {DType::W4A16, 172, 9, 64},
      {DType::W4A16, 33, 5, 32}, {DType::W4A8, 172, 9, 128}, {DType::W4A8, 33, 5, 32},
  };
  for (const Case& c : cases) {
    for (size_t tokens : {1u, 2u, 3u, 17u}) {
      check_case(c, tokens, tokens % 2 == 1, tokens != 2);
      if (tokens == 1) check_case(c, tokens, false, false);
    }
  }
}

TEST_CASE("linear refuses weights whose bytes do not hold their shape") {
  std::vector<uint8_t> bytes(100);
  TensorView w;
  w.name = "blk.0.attn_q.weight";
  w.dtype = DType::Q8_0;
  w.shape = {3, 64};
  w.data = bytes.data();
  w.bytes = bytes.size();  // 3 rows of 68 bytes need 204
  std::vector<float> x(64), y(3);
  fineserve::engine::ThreadPool pool(1);
  CHECK_THROWS_WITH_AS(fineserve::ops::linear(pool, x.data(), 1, w, nullptr, y.data()),
                       doctest::Contains("blk.0.attn_q.weight"), std::invalid_argument);
  w.shape = {1, 40};
  CHECK_THROWS_WITH_AS(fineserve::ops::linear(pool, x.data(), 1, w, nullptr, y.data()),
                       doctest::Contains("multiple of 32"), std::invalid_argument);
}
