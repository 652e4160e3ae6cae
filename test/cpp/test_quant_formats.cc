// Quantized weight formats: byte layouts, round trips within half a quantization step, GGUF
// quantizers bit-identical to llama.cpp's reference algorithm, K-quant decoding of hand-built
// blocks. References are written here from the published layouts, never taken from quant/.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "quant/fp8.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"

using fineserve::model::DType;
namespace quant = fineserve::quant;

namespace {

// The compiler's own binary16 (round to nearest even): independent of simd/half.h.
uint16_t to_f16(float v) {
  _Float16 h = static_cast<_Float16>(v);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}
float from_f16(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<float>(h);
}
float f16_at(const uint8_t* p) {
  uint16_t b;
  std::memcpy(&b, p, 2);
  return from_f16(b);
}
float f32_at(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

std::vector<float> random_row(size_t n, uint32_t seed, float spread = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, spread);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x, uint32_t group = 0) {
  std::vector<uint8_t> out(quant::row_bytes(t, x.size(), group));
  quant::quantize_row(t, x.data(), x.size(), group, out.data());
  return out;
}
std::vector<float> dequantize(DType t, const std::vector<uint8_t>& q, size_t cols, uint32_t group = 0) {
  std::vector<float> out(cols);
  quant::dequantize_row(t, q.data(), cols, group, out.data());
  return out;
}

// llama.cpp's quantize_row_q8_0_ref and quantize_row_q4_0_ref (ggml-quants.c), re-derived from
// the algorithm: block of 32, f16 scale first.
std::vector<uint8_t> llama_q8_0(const std::vector<float>& x) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0.0f;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    uint16_t h = to_f16(d);
    out.push_back(uint8_t(h & 0xFF));
    out.push_back(uint8_t(h >> 8));
    for (size_t j = 0; j < 32; ++j) out.push_back(uint8_t(int8_t(roundf(x[32 * b + j] * id))));
  }
  return out;
}
std::vector<uint8_t> llama_q4_0(const std::vector<float>& x) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const float* v = x.data() + 32 * b;
    float amax = 0.0f, max = 0.0f;
    for (size_t j = 0; j < 32; ++j) {
      if (amax < std::fabs(v[j])) amax = std::fabs(v[j]), max = v[j];
    }
    const float d = max / -8, id = d ? 1.0f / d : 0.0f;
    uint16_t h = to_f16(d);
    out.push_back(uint8_t(h & 0xFF));
    out.push_back(uint8_t(h >> 8));
    for (size_t j = 0; j < 16; ++j) {
      int lo = std::min(15, int(int8_t(v[j] * id + 8.5f)));
      int hi = std::min(15, int(int8_t(v[j + 16] * id + 8.5f)));
      out.push_back(uint8_t(lo | (hi << 4)));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("weight formats: block sizes, row bytes and layout errors") {
  CHECK(quant::block_elements(DType::Q8_0) == 32);
  CHECK(quant::block_elements(DType::Q4_0) == 32);
  CHECK(quant::block_elements(DType::Q4_K) == 256);
  CHECK(quant::block_elements(DType::Q6_K) == 256);
  CHECK(quant::block_elements(DType::W4A16) == 1);
  // ggml type_size per block: 34, 18, 144, 210.
  CHECK(quant::row_bytes(DType::Q8_0, 64) == 68);
  CHECK(quant::row_bytes(DType::Q4_0, 64) == 36);
  CHECK(quant::row_bytes(DType::Q4_K, 512) == 288);
  CHECK(quant::row_bytes(DType::Q6_K, 256) == 210);
  CHECK(quant::row_bytes(DType::F16, 10) == 20);
  // fineserve: 16-byte header (W8A8/FP8), data padded to 16.
  CHECK(quant::row_bytes(DType::W8A8, 33) == 64);
  CHECK(quant::row_bytes(DType::FP8, 1) == 32);
  CHECK(quant::row_bytes(DType::FP8, 768) == 784);
  // W4A16 172 / group 128: 2 groups * 4 bytes -> 16; 6 sub-blocks * 16 = 96.
  CHECK(quant::row_bytes(DType::W4A16, 172, 128) == 112);
  // W4A8 172 / group 32: 4 + 6 group scales -> 16; 96 of nibbles.
  CHECK(quant::row_bytes(DType::W4A8, 172, 32) == 112);
  CHECK(quant::row_bytes(DType::W4A8, 1024, 32) == 48 + 512);

  CHECK(quant::row_layout_error(DType::Q4_0, 172) == "Q4_0 needs a row length that is a multiple of 32, got 172");
  CHECK(quant::row_layout_error(DType::Q6_K, 128) == "Q6_K needs a row length that is a multiple of 256, got 128");
  CHECK(quant::row_layout_error(DType::W4A16, 172, 48) ==
        "W4A16 needs a group size that is a positive multiple of 32, got 48");
  CHECK(quant::row_layout_error(DType::W4A8, 172, 0) ==
        "W4A8 needs a group size that is a positive multiple of 32, got 0");
  CHECK(quant::row_layout_error(DType::W8A8, 0) == "W8A8 needs a row length of at least 1, got 0");
  CHECK(quant::row_layout_error(DType::W8A8, 1).empty());
  CHECK(quant::row_layout_error(DType::W4A16, 33, 32).empty());

  std::vector<float> x(40, 1.0f);
  std::vector<uint8_t> out(256);
  CHECK_THROWS_AS(quant::quantize_row(DType::Q8_0, x.data(), 40, 0, out.data()), std::invalid_argument);
  CHECK_THROWS_AS(quant::quantize_row(DType::Q4_K, x.data(), 40, 0, out.data()), std::invalid_argument);
  CHECK_THROWS_AS(quant::quantize_row(DType::F16, x.data(), 40, 0, out.data()), std::invalid_argument);
  CHECK(quant::can_quantize_to(DType::W4A8));
  CHECK(quant::can_quantize_to(DType::Q6_K));  // kquant_quantize.cc
  CHECK_FALSE(quant::can_quantize_to(DType::F16));
}

TEST_CASE("Q8_0 and Q4_0 quantize bit-identically to llama.cpp's reference quantizers") {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::vector<float> x = random_row(256, seed, seed % 2 ? 0.02f : 3.0f);
    if (seed == 3) std::fill(x.begin(), x.begin() + 32, 0.0f);  // an all-zero block: d = 0
    if (seed == 4) x[5] = -x[5] * 50;                            // a negative maximum
    CHECK(quantize(DType::Q8_0, x) == llama_q8_0(x));
    CHECK(quantize(DType::Q4_0, x) == llama_q4_0(x));
  }
}

TEST_CASE("round trips stay within half a step of the stored scale") {
  for (size_t cols : {1u, 33u, 172u, 256u}) {
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      CAPTURE(cols);
      CAPTURE(seed);
      std::vector<float> x = random_row(cols, seed * 7 + uint32_t(cols), 0.5f);
      if (cols % 32 == 0) {
        auto q8 = quantize(DType::Q8_0, x);
        auto y8 = dequantize(DType::Q8_0, q8, cols);
        auto q4 = quantize(DType::Q4_0, x);
        auto y4 = dequantize(DType::Q4_0, q4, cols);
        for (size_t i = 0; i < cols; ++i) {
          const float d8 = f16_at(&q8[34 * (i / 32)]), d4 = std::fabs(f16_at(&q4[18 * (i / 32)]));
          // Q8_0 q was chosen against d in f32; the f16 d moves q * d by at most 127 * d * 2^-11.
          CHECK(std::fabs(y8[i] - x[i]) <= 0.5f * d8 + 127 * d8 / 2048 + 1e-7f);
          // Q4_0: -max maps to -8 exactly; the other sign can reach +8 and is clipped to 7, a
          // whole step. f16 rounding of d adds up to 8 * d * 2^-11.
          const float steps = std::fabs(x[i] / d4) > 7.5f ? 1.0f : 0.5f;
          CHECK(std::fabs(y4[i] - x[i]) <= steps * d4 + 8 * d4 / 2048 + 1e-7f);
        }
      }
      auto qw = quantize(DType::W8A8, x);
      auto yw = dequantize(DType::W8A8, qw, cols);
      const float sw = f32_at(qw.data());
      for (size_t i = 0; i < cols; ++i) CHECK(std::fabs(yw[i] - x[i]) <= 0.5f * sw * (1 + 1e-6f));

      auto qf = quantize(DType::FP8, x);
      auto yf = dequantize(DType::FP8, qf, cols);
      const float sf = f32_at(qf.data());
      for (size_t i = 0; i < cols; ++i) {
        // E4M3 keeps 3 mantissa bits: half an ulp is 2^-4 of the value's power of two, and the
        // subnormal step is 2^-9.
        const float v = std::fabs(x[i]) / sf;
        const float half_ulp = v >= 1.0f / 64 ? std::exp2(std::floor(std::log2(v))) / 16 : 1.0f / 1024;
        CHECK(std::fabs(yf[i] - x[i]) <= sf * half_ulp * (1 + 1e-5f));
      }

      for (uint32_t group : {32u, 128u}) {
        CAPTURE(group);
        auto q16 = quantize(DType::W4A16, x, group);
        auto y16 = dequantize(DType::W4A16, q16, cols, group);
        for (size_t i = 0; i < cols; ++i) {
          const size_t g = i / group;
          const float scale = f16_at(&q16[4 * g]), mn = f16_at(&q16[4 * g + 2]);
          // The f16 min and scale each move the grid by at most their rounding (2^-11 relative),
          // which the clamp at 0 and 15 can turn into error beyond half a step.
          CHECK(std::fabs(y16[i] - x[i]) <= 0.5f * scale + (std::fabs(mn) + 15 * scale) / 1024 + 1e-6f);
        }
        auto q48 = quantize(DType::W4A8, x, group);
        auto y48 = dequantize(DType::W4A8, q48, cols, group);
        const float rs = f32_at(q48.data());
        CHECK(std::exp2(std::round(std::log2(rs))) == rs);  // a power of two
        for (size_t i = 0; i < cols; ++i) {
          const float step = quant::fp8_to_f32(q48[4 + i / group]) * rs;
          CHECK(std::fabs(y48[i] - x[i]) <= 0.5f * step * (1 + 1e-6f));
        }
      }
    }
  }
}

TEST_CASE("fineserve formats: partial last groups, padding and the FireQ row scale") {
  // 172 columns in groups of 128: the last group (44 elements) gets its own small scale.
  std::vector<float> x(172);
  for (size_t i = 0; i < 172; ++i) x[i] = i < 128 ? 10.0f * std::sin(float(i)) : 1e-3f * std::cos(float(i));
  for (DType t : {DType::W4A16, DType::W4A8}) {
    CAPTURE(fineserve::model::dtype_name(t));
    auto q = quantize(t, x, 128);
    auto y = dequantize(t, q, 172, 128);
    // Half a step of the last group alone: (max - min) / 15 / 2 <= 2e-3 / 30 (W4A16), amax / 7 / 2 (W4A8).
    for (size_t i = 128; i < 172; ++i) CHECK(std::fabs(y[i] - x[i]) <= 1e-3f / 14 * 1.07f);
    const size_t data = quant::row_data_offset(t, 172, 128);
    // Sub-block 5 holds elements 160..191: elements 172.. are padding (high nibbles of bytes
    // 12..15 and everything of the elements 176..191).
    const uint8_t pad = t == DType::W4A16 ? 0 : 8;
    for (size_t j = 12; j < 16; ++j) CHECK((q[data + 5 * 16 + j] & 0x0F) == pad);
    for (size_t j = 0; j < 16; ++j) CHECK((q[data + 5 * 16 + j] >> 4) == pad);
  }
  // The largest group scale (10/7) / row_scale lands in (224, 448].
  auto q = quantize(DType::W4A8, x, 128);
  const float gs0 = quant::fp8_to_f32(q[4]);
  CHECK(gs0 > 224.0f);
  CHECK(gs0 <= 448.0f);
  // A group 2^-20 of the largest does not underflow to a zero scale.
  std::vector<float> wide(64, 1.0f);
  for (size_t i = 32; i < 64; ++i) wide[i] = std::ldexp(1.0f, -20) * (i % 3 ? 1.0f : -1.0f);
  auto qw = quantize(DType::W4A8, wide, 32);
  CHECK(qw[5] != 0);
  auto yw = dequantize(DType::W4A8, qw, 64, 32);
  CHECK(yw[33] != 0.0f);
  // W8A8 / FP8 headers: scale, then 12 zero bytes, data at 16, zero padding to the row's end.
  auto w8 = quantize(DType::W8A8, std::vector<float>{1.0f, -0.5f, 0.25f});
  CHECK(w8.size() == 32);
  CHECK(f32_at(w8.data()) == doctest::Approx(1.0f / 127));
  for (size_t i = 4; i < 16; ++i) CHECK(w8[i] == 0);
  CHECK(int8_t(w8[16]) == 127);
  CHECK(int8_t(w8[17]) == -64);  // -63.5 rounds away from zero
  for (size_t i = 19; i < 32; ++i) CHECK(w8[i] == 0);
}

TEST_CASE("FP8 weights saturate instead of overflowing, and never produce NaN") {
  // A row whose amax is 448 * scale maps to 0x7E (448) exactly; E4M3 conversions saturate.
  std::vector<float> x = {1e30f, -1e30f, 1.0f, 0.0f};
  auto q = quantize(DType::FP8, x);
  CHECK(q[16] == 0x7E);
  CHECK(q[17] == 0xFE);
  CHECK(q[19] == 0x00);
  auto y = dequantize(DType::FP8, q, 4);
  CHECK(y[0] == doctest::Approx(1e30f).epsilon(1e-6));
  CHECK(y[1] == doctest::Approx(-1e30f).epsilon(1e-6));
  for (float v : y) CHECK_FALSE(std::isnan(v));
  CHECK(quant::f32_to_fp8(1000.0f) == 0x7E);
  CHECK(quant::f32_to_fp8(-std::numeric_limits<float>::infinity()) == 0xFE);
}

TEST_CASE("Q4_K decodes hand-built super-blocks by the ggml layout") {
  // Intended values: 8 sub-block scales and mins of 6 bits (some >= 16 so the high bits matter
  // in both halves of the packing), and quants 0..15.
  const int sc[8] = {1, 63, 17, 5, 33, 2, 48, 31};
  const int mn[8] = {0, 7, 62, 16, 1, 40, 9, 63};
  int q[256];
  for (int e = 0; e < 256; ++e) q[e] = (e * 7 + e / 32) % 16;
  const float d = 0.5f, dmin = 0.125f;
  std::vector<uint8_t> blk(144, 0);
  uint16_t hd = to_f16(d), hm = to_f16(dmin);
  std::memcpy(&blk[0], &hd, 2);
  std::memcpy(&blk[2], &hm, 2);
  uint8_t* s = &blk[4];
  for (int i = 0; i < 4; ++i) {
    s[i] = uint8_t((sc[i] & 63) | ((sc[i + 4] >> 4) << 6));
    s[i + 4] = uint8_t((mn[i] & 63) | ((mn[i + 4] >> 4) << 6));
    s[i + 8] = uint8_t((sc[i + 4] & 15) | ((mn[i + 4] & 15) << 4));
  }
  for (int k = 0; k < 4; ++k) {
    for (int l = 0; l < 32; ++l) blk[16 + 32 * k + l] = uint8_t(q[64 * k + l] | (q[64 * k + 32 + l] << 4));
  }
  auto y = dequantize(DType::Q4_K, blk, 256);
  for (int e = 0; e < 256; ++e) {
    CAPTURE(e);
    CHECK(y[e] == d * sc[e / 32] * q[e] - dmin * mn[e / 32]);
  }
}

TEST_CASE("Q6_K decodes hand-built super-blocks by the ggml layout") {
  int q[256];
  for (int e = 0; e < 256; ++e) q[e] = (e * 13 + 5) % 64;
  int8_t scales[16];
  for (int j = 0; j < 16; ++j) scales[j] = int8_t((j % 2 ? -1 : 1) * (3 * j + 1));
  const float d = 0.25f;
  std::vector<uint8_t> blk(210, 0);
  for (int e = 0; e < 256; ++e) {
    // Element e = 128 h + 32 s + l: ql nibble (s odd: ql[l + 32]; s >= 2: high nibble), qh 2-bit
    // field s of qh[l].
    const int h = e / 128, s = (e % 128) / 32, l = e % 32;
    uint8_t& ql = blk[64 * h + l + (s % 2) * 32];
    ql = uint8_t(ql | ((q[e] & 15) << (s >= 2 ? 4 : 0)));
    blk[128 + 32 * h + l] = uint8_t(blk[128 + 32 * h + l] | ((q[e] >> 4) << (2 * s)));
  }
  std::memcpy(&blk[192], scales, 16);
  uint16_t hd = to_f16(d);
  std::memcpy(&blk[208], &hd, 2);
  auto y = dequantize(DType::Q6_K, blk, 256);
  for (int e = 0; e < 256; ++e) {
    CAPTURE(e);
    CHECK(y[e] == d * scales[e / 16] * (q[e] - 32));
  }
}

TEST_CASE("dequantize_row decodes the plain types and refuses bad layouts") {
  std::vector<float> x = {1.5f, -2.0f, 0.1f};
  std::vector<uint8_t> f16(6), bf16(6);
  for (size_t i = 0; i < 3; ++i) {
    uint16_t h = to_f16(x[i]);
    std::memcpy(&f16[2 * i], &h, 2);
    uint32_t bits;
    std::memcpy(&bits, &x[i], 4);
    uint16_t b = uint16_t(bits >> 16);  // truncation: exact for 1.5 and -2, 0.1 below
    std::memcpy(&bf16[2 * i], &b, 2);
  }
  auto y = dequantize(DType::F16, f16, 3);
  CHECK(y[0] == 1.5f);
  CHECK(y[1] == -2.0f);
  CHECK(y[2] == from_f16(to_f16(0.1f)));
  auto z = dequantize(DType::BF16, bf16, 3);
  CHECK(z[0] == 1.5f);
  CHECK(z[1] == -2.0f);
  CHECK(std::fabs(z[2] - 0.1f) < 0.1f / 128);
  std::vector<float> out(40);
  std::vector<uint8_t> bytes(100);
  CHECK_THROWS_AS(quant::dequantize_row(DType::Q8_0, bytes.data(), 40, 0, out.data()), std::invalid_argument);
}
