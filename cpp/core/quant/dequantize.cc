// The reference decoding of every weight type (layouts in weight_format.h). Written for clarity,
// not speed: the kernels decode in registers and are tested against this.
#include <cstring>
#include <stdexcept>
#include <string>

#include "quant/fp8.h"
#include "quant/quantize.h"
#include "quant/row_bytes.h"
#include "quant/row_kernels.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"
#include "simd/half.h"

namespace fineserve::quant {

using model::DType;

namespace {

// The 6-bit scale and min of sub-block i of a Q4_K super-block.
void q4_k_scale_min(const uint8_t* s, int i, int* sc, int* m) {
  if (i < 4) {
    *sc = s[i] & 63;
    *m = s[i + 4] & 63;
  } else {
    *sc = (s[i + 4] & 15) | ((s[i - 4] >> 6) << 4);
    *m = (s[i + 4] >> 4) | ((s[i] >> 6) << 4);
  }
}

}  // namespace

namespace decode {

void f32(const uint8_t* src, uint64_t cols, uint32_t, float* dst) { std::memcpy(dst, src, 4 * cols); }

void f16(const uint8_t* src, uint64_t cols, uint32_t, float* dst) {
  for (uint64_t i = 0; i < cols; ++i) dst[i] = f16_at(src + 2 * i);
}

void bf16(const uint8_t* src, uint64_t cols, uint32_t, float* dst) {
  for (uint64_t i = 0; i < cols; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = simd::bf16_to_f32_scalar(h);
  }
}

void q8_0(const uint8_t* p, uint64_t cols, uint32_t, float* y) {
  for (uint64_t b = 0; b < cols / 32; ++b, p += 34) {
    const float d = f16_at(p);
    for (int j = 0; j < 32; ++j) *y++ = d * static_cast<int8_t>(p[2 + j]);
  }
}

void q4_0(const uint8_t* p, uint64_t cols, uint32_t, float* y) {
  for (uint64_t b = 0; b < cols / 32; ++b, p += 18, y += 32) {
    const float d = f16_at(p);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * ((p[2 + j] & 15) - 8);
      y[j + 16] = d * ((p[2 + j] >> 4) - 8);
    }
  }
}

void q4_k(const uint8_t* p, uint64_t cols, uint32_t, float* y) {
  for (uint64_t b = 0; b < cols / 256; ++b, p += 144) {
    const float d = f16_at(p), dmin = f16_at(p + 2);
    const uint8_t* scales = p + 4;
    const uint8_t* qs = p + 16;
    for (int k = 0; k < 4; ++k, qs += 32) {
      int sc0, m0, sc1, m1;
      q4_k_scale_min(scales, 2 * k, &sc0, &m0);
      q4_k_scale_min(scales, 2 * k + 1, &sc1, &m1);
      for (int l = 0; l < 32; ++l) *y++ = d * sc0 * (qs[l] & 15) - dmin * m0;
      for (int l = 0; l < 32; ++l) *y++ = d * sc1 * (qs[l] >> 4) - dmin * m1;
    }
  }
}

void q6_k(const uint8_t* p, uint64_t cols, uint32_t, float* y) {
  for (uint64_t b = 0; b < cols / 256; ++b, p += 210) {
    const float d = f16_at(p + 208);
    for (int h = 0; h < 2; ++h, y += 128) {
      const uint8_t* ql = p + 64 * h;
      const uint8_t* qh = p + 128 + 32 * h;
      const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192 + 8 * h);
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q0 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
        const int q1 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
        const int q2 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
        const int q3 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
        y[l] = d * sc[is] * q0;
        y[l + 32] = d * sc[is + 2] * q1;
        y[l + 64] = d * sc[is + 4] * q2;
        y[l + 96] = d * sc[is + 6] * q3;
      }
    }
  }
}

void w8a8(const uint8_t* src, uint64_t cols, uint32_t, float* dst) {
  const float scale = f32_at(src);
  for (uint64_t i = 0; i < cols; ++i) dst[i] = scale * static_cast<int8_t>(src[kRowAlign + i]);
}

void fp8(const uint8_t* src, uint64_t cols, uint32_t, float* dst) {
  const float scale = f32_at(src);
  for (uint64_t i = 0; i < cols; ++i) dst[i] = scale * fp8_to_f32(src[kRowAlign + i]);
}

void w4a16(const uint8_t* p, uint64_t cols, uint32_t group, float* y) {
  const uint8_t* data = p + row_data_offset(DType::W4A16, cols, group);
  for (uint64_t i = 0; i < cols; ++i) {
    const uint64_t g = i / group;
    y[i] = f16_at(p + 4 * g) * nibble(data, i) + f16_at(p + 4 * g + 2);
  }
}

void w4a8(const uint8_t* p, uint64_t cols, uint32_t group, float* y) {
  const uint8_t* data = p + row_data_offset(DType::W4A8, cols, group);
  const float row_scale = f32_at(p);
  for (uint64_t i = 0; i < cols; ++i) {
    y[i] = static_cast<float>(nibble(data, i) - 8) * fp8_to_f32(p[4 + i / group]) * row_scale;
  }
}

}  // namespace decode

void dequantize_row(DType t, const uint8_t* src, uint64_t cols, uint32_t group, float* dst) {
  std::string why = row_layout_error(t, cols, group);
  if (!why.empty()) throw std::invalid_argument("dequantize_row: " + why);
  traits(t).decode(src, cols, group, dst);
}

}  // namespace fineserve::quant
