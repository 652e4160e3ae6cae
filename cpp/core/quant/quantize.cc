// Round-to-nearest quantizers of one row (layouts in weight_format.h). The GGUF ones follow
// llama.cpp's reference quantizers operation for operation, so a file we write is byte-identical
// to what llama-quantize makes from the same floats.
#include "quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "quant/fp8.h"
#include "quant/row_kernels.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"
#include "simd/half.h"

namespace fineserve::quant {

using model::DType;

namespace {

void put_f32(uint8_t* p, float v) { std::memcpy(p, &v, 4); }
void put_f16(uint8_t* p, float v) {
  uint16_t h = simd::f32_to_f16_scalar(v);
  std::memcpy(p, &h, 2);
}
float f16_round(float v) { return simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(v)); }

float abs_max(const float* x, uint64_t n) {
  float amax = 0.0f;
  for (uint64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

// quantize_row_q8_0_ref: d = amax / 127, q = roundf(x * (1 / d)).
}  // namespace

namespace encode {

void q8_0(const float* x, uint64_t cols, uint32_t, uint8_t* dst) {
  for (uint64_t b = 0; b < cols / 32; ++b, x += 32, dst += 34) {
    const float d = abs_max(x, 32) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(dst, d);
    for (int j = 0; j < 32; ++j) dst[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
  }
}

// quantize_row_q4_0_ref: the signed value of largest magnitude maps to -8, so the asymmetric
// int4 range -8..7 is used fully on the side that needs it.
void q4_0(const float* x, uint64_t cols, uint32_t, uint8_t* dst) {
  for (uint64_t b = 0; b < cols / 32; ++b, x += 32, dst += 18) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(dst, d);
    for (int j = 0; j < 16; ++j) {
      const uint8_t lo = static_cast<uint8_t>(std::min(15, int(static_cast<int8_t>(x[j] * id + 8.5f))));
      const uint8_t hi = static_cast<uint8_t>(std::min(15, int(static_cast<int8_t>(x[j + 16] * id + 8.5f))));
      dst[2 + j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void w8a8(const float* x, uint64_t cols, uint32_t, uint8_t* dst) {
  const float scale = abs_max(x, cols) / 127.0f;
  put_f32(dst, scale);
  int8_t* q = reinterpret_cast<int8_t*>(dst + kRowAlign);
  for (uint64_t i = 0; i < cols; ++i) {
    float v = scale != 0.0f ? std::round(x[i] / scale) : 0.0f;
    q[i] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
  }
}

void fp8(const float* x, uint64_t cols, uint32_t, uint8_t* dst) {
  const float scale = abs_max(x, cols) / kFp8Max;
  put_f32(dst, scale);
  uint8_t* q = dst + kRowAlign;
  for (uint64_t i = 0; i < cols; ++i) q[i] = scale != 0.0f ? f32_to_fp8(x[i] / scale) : 0;
}

// Nibble k of a row's sub-blocks (layout in weight_format.h).
static void put_nibble(uint8_t* data, uint64_t k, uint8_t v) {
  uint8_t& byte = data[k / 32 * 16 + k % 16];
  byte = (k % 32) < 16 ? static_cast<uint8_t>((byte & 0xF0) | v) : static_cast<uint8_t>((byte & 0x0F) | (v << 4));
}

void w4a16(const float* x, uint64_t cols, uint32_t group, uint8_t* dst) {
  uint8_t* data = dst + row_data_offset(DType::W4A16, cols, group);
  for (uint64_t g = 0, start = 0; start < cols; ++g, start += group) {
    const uint64_t n = std::min<uint64_t>(group, cols - start);
    const float mn = *std::min_element(x + start, x + start + n);
    const float mx = *std::max_element(x + start, x + start + n);
    // The kernels see the f16 values, so the nibbles are chosen against those.
    const float scale = f16_round((mx - mn) / 15.0f), min = f16_round(mn);
    put_f16(dst + 4 * g, scale);
    put_f16(dst + 4 * g + 2, min);
    for (uint64_t i = start; i < start + n; ++i) {
      float q = scale != 0.0f ? std::round((x[i] - min) / scale) : 0.0f;
      put_nibble(data, i, static_cast<uint8_t>(std::clamp(q, 0.0f, 15.0f)));
    }
  }
}

// The power of two that puts `largest` (the largest group scale) in (224, 448] once divided by it.
static float fireq_row_scale(float largest) {
  int e;
  const float f = std::frexp(largest / kFp8Max, &e);  // largest / 448 = f * 2^e, f in [0.5, 1)
  return std::ldexp(1.0f, f == 0.5f ? e - 1 : e);
}

void w4a8(const float* x, uint64_t cols, uint32_t group, uint8_t* dst) {
  const uint64_t groups = groups_in_row(cols, group);
  uint8_t* data = dst + row_data_offset(DType::W4A8, cols, group);
  float largest = 0.0f;
  for (uint64_t start = 0; start < cols; start += group) {
    largest = std::max(largest, abs_max(x + start, std::min<uint64_t>(group, cols - start)) / 7.0f);
  }
  const float row_scale = largest > 0.0f ? fireq_row_scale(largest) : 1.0f;
  put_f32(dst, row_scale);
  for (uint64_t g = 0; g < groups; ++g) {
    const uint64_t start = g * group, n = std::min<uint64_t>(group, cols - start);
    const float amax = abs_max(x + start, n) / row_scale;
    uint8_t code = f32_to_fp8(amax / 7.0f);
    // Rounding the scale down (far, in E4M3's subnormals) would clip the largest weight by more
    // than half a step, and a scale that underflowed to zero would drop the group.
    while (code < 0x7E && fp8_to_f32(code) * 7.5f < amax) ++code;
    dst[4 + g] = code;
    const float step = fp8_to_f32(code) * row_scale;
    for (uint64_t i = start; i < start + n; ++i) {
      float q = step != 0.0f ? std::round(x[i] / step) : 0.0f;
      put_nibble(data, i, static_cast<uint8_t>(std::clamp(q, -7.0f, 7.0f) + 8.0f));
    }
  }
  for (uint64_t i = cols; i < round_up(cols, 32); ++i) put_nibble(data, i, 8);
}

}  // namespace encode

bool can_quantize_to(DType t) { return traits(t).encode != nullptr; }

void quantize_row(DType t, const float* src, uint64_t cols, uint32_t group, uint8_t* dst) {
  const WeightTypeTraits& row = traits(t);
  if (row.encode == nullptr) {
    throw std::invalid_argument(std::string("quantize_row: cannot quantize to ") + row.name);
  }
  std::string why = row_layout_error(t, cols, group);
  if (!why.empty()) throw std::invalid_argument("quantize_row: " + why);
  std::memset(dst, 0, row.row_bytes(cols, group));  // padding is part of the format
  row.encode(src, cols, group, dst);
}

}  // namespace fineserve::quant
