#include "kv/kv_codec.h"

#include <cmath>
#include <cstring>

#include "quant/fp8.h"
#include "simd/dispatch.h"
#include "simd/half.h"

namespace fineserve::kv {

namespace {

constexpr uint16_t kF16Max = 0x7BFF;  // 65504

float load_scale(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return simd::f16_to_f32_scalar(h);
}

// Symmetric quantization to -qmax..qmax with an f16 scale of amax / qmax. The values are divided by
// the scale as stored (rounded to f16), so decoding q * scale is exactly what was meant; a scale
// that rounded down makes x / s slightly exceed qmax at the row's maximum, which the clamp absorbs
// with an error still under s / 2.
float quantize_scale(const float* src, uint32_t n, float qmax, uint8_t* scale) {
  float amax = 0;
  for (uint32_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(src[i]));  // fmax skips NaN
  uint16_t h = simd::f32_to_f16_scalar(amax / qmax);
  if ((h & 0x7FFFu) > kF16Max) h = kF16Max;  // beyond f16: saturate, the clamp bounds the codes
  std::memcpy(scale, &h, sizeof h);
  return simd::f16_to_f32_scalar(h);
}

int32_t quantize_value(float x, float s, float qmax) {
  if (!(s > 0)) return 0;  // an all-zero (or underflowing) row
  float r = std::nearbyint(x / s);
  if (!(r == r)) return 0;  // NaN
  r = r > qmax ? qmax : (r < -qmax ? -qmax : r);
  return static_cast<int32_t>(r);
}

void encode_int8(const float* src, uint32_t n, uint8_t* row, uint8_t* scale) {
  const float s = quantize_scale(src, n, 127.0f, scale);
  auto* q = reinterpret_cast<int8_t*>(row);
  for (uint32_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(quantize_value(src[i], s, 127.0f));
}

void encode_int4(const float* src, uint32_t n, uint8_t* row, uint8_t* scale) {
  const float s = quantize_scale(src, n, 7.0f, scale);
  for (uint32_t i = 0; i < n / 2; ++i) {
    uint32_t lo = static_cast<uint32_t>(quantize_value(src[2 * i], s, 7.0f)) & 0xFu;
    uint32_t hi = static_cast<uint32_t>(quantize_value(src[2 * i + 1], s, 7.0f)) & 0xFu;
    row[i] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

// The loops below are plain so that the compiler vectorises them at every SIMD level: they run
// once per cached row per attention call, next to a dot product of the same length.
void decode_int8(const uint8_t* row, float s, uint32_t n, float* dst) {
  const auto* q = reinterpret_cast<const int8_t*>(row);
  for (uint32_t i = 0; i < n; ++i) dst[i] = s * static_cast<float>(q[i]);
}

void decode_int4(const uint8_t* row, float s, uint32_t n, float* dst) {
  for (uint32_t i = 0; i < n / 2; ++i) {
    const auto b = static_cast<int8_t>(row[i]);
    // Arithmetic shifts sign-extend each nibble.
    dst[2 * i] = s * static_cast<float>(static_cast<int8_t>(b << 4) >> 4);
    dst[2 * i + 1] = s * static_cast<float>(b >> 4);
  }
}

// E4M3 -> f32 without a table: the 7 magnitude bits placed at f32 bit 20 are a float whose
// exponent is the E4M3 exponent (bias 127 instead of 7, f32 subnormals where E4M3 has its own), so
// multiplying by 2^120 rebiases both normal and subnormal codes exactly. S.1111.111 is NaN.
void decode_fp8(const uint8_t* row, uint32_t n, float* dst) {
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t b = row[i], mag = b & 0x7Fu;
    const uint32_t bits = ((b & 0x80u) << 24) | (mag << 20);
    // Integer-only NaN patch (keeps the loop vectorisable): NaN times 2^120 stays NaN.
    const uint32_t nan = static_cast<uint32_t>(-static_cast<int32_t>(mag == 0x7Fu)) & 0x7FC00000u;
    float f;
    const uint32_t patched = bits | nan;
    std::memcpy(&f, &patched, sizeof f);
    dst[i] = f * 0x1p120f;
  }
}

// ---- int4 K, per channel over the block -------------------------------------------------------

constexpr float kK4Levels = 15;  // codes 0..15

uint16_t f16_saturating(float x) {
  uint16_t h = simd::f32_to_f16_scalar(x);
  if ((h & 0x7FFFu) > kF16Max && (h & 0x7FFFu) <= 0x7C00u) h = static_cast<uint16_t>((h & 0x8000u) | kF16Max);
  return h;
}

uint32_t k4_code(float x, float step, float minimum) {
  if (!(step > 0)) return 0;
  float r = std::nearbyint((x - minimum) / step);
  if (!(r == r)) return 0;  // NaN
  r = r < 0 ? 0 : (r > kK4Levels ? kK4Levels : r);
  return static_cast<uint32_t>(r);
}

uint32_t k4_get(const uint8_t* row, uint32_t c) { return (row[c / 2] >> (4 * (c % 2))) & 0xFu; }

void k4_set(uint8_t* row, uint32_t c, uint32_t q) {
  const uint32_t shift = 4 * (c % 2);
  row[c / 2] = static_cast<uint8_t>((row[c / 2] & ~(0xFu << shift)) | (q << shift));
}

}  // namespace

void append_k_int4(const float* src, uint32_t d, uint32_t slot, uint8_t* rows, uint8_t* params) {
  auto* step_h = reinterpret_cast<uint16_t*>(params);  // may be unaligned in principle: memcpy
  auto* min_h = step_h + d;
  const uint32_t row_bytes = d / 2;
  uint8_t* row = rows + static_cast<uint64_t>(slot) * row_bytes;
  for (uint32_t c = 0; c < d; ++c) {
    const float x = src[c];
    uint16_t sh, mh;
    std::memcpy(&sh, step_h + c, 2);
    std::memcpy(&mh, min_h + c, 2);
    float step = simd::f16_to_f32_scalar(sh), minimum = simd::f16_to_f32_scalar(mh);
    if (slot == 0) {
      // One row: the range is a point, stored exactly up to f16 rounding.
      sh = 0;
      mh = f16_saturating(x == x ? x : 0.0f);
    } else {
      const float hi = minimum + kK4Levels * step;
      const float lo2 = std::fmin(minimum, x), hi2 = std::fmax(hi, x);  // fmin/fmax skip NaN
      const uint16_t mh2 = f16_saturating(lo2);
      const uint16_t sh2 = f16_saturating((hi2 - simd::f16_to_f32_scalar(mh2)) / kK4Levels);
      if (mh2 != mh || sh2 != sh) {
        const float step2 = simd::f16_to_f32_scalar(sh2), min2 = simd::f16_to_f32_scalar(mh2);
        for (uint32_t s = 0; s < slot; ++s) {
          uint8_t* r = rows + static_cast<uint64_t>(s) * row_bytes;
          k4_set(r, c, k4_code(minimum + step * static_cast<float>(k4_get(r, c)), step2, min2));
        }
        sh = sh2;
        mh = mh2;
      }
    }
    std::memcpy(step_h + c, &sh, 2);
    std::memcpy(min_h + c, &mh, 2);
    k4_set(row, c, k4_code(x, simd::f16_to_f32_scalar(sh), simd::f16_to_f32_scalar(mh)));
  }
}

void load_k_params(const uint8_t* params, uint32_t d, float* step, float* minimum) {
  for (uint32_t c = 0; c < d; ++c) {
    step[c] = load_scale(params + 2 * c);
    minimum[c] = load_scale(params + 2 * (d + c));
  }
}

void decode_k_int4(const uint8_t* row, const float* step, const float* minimum, uint32_t d, float* dst) {
  for (uint32_t i = 0; i < d / 2; ++i) {
    const uint32_t b = row[i];
    dst[2 * i] = minimum[2 * i] + step[2 * i] * static_cast<float>(b & 0xFu);
    dst[2 * i + 1] = minimum[2 * i + 1] + step[2 * i + 1] * static_cast<float>(b >> 4);
  }
}

void append_k_fp8(const float* src, uint32_t d, uint32_t slot, uint8_t* row, uint8_t* params) {
  auto* ref_h = reinterpret_cast<uint16_t*>(params);
  for (uint32_t c = 0; c < d; ++c) {
    const float x = src[c];
    uint16_t h;
    if (slot == 0) {
      h = f16_saturating(x == x ? x : 0.0f);
      std::memcpy(ref_h + c, &h, 2);
    } else {
      std::memcpy(&h, ref_h + c, 2);
    }
    row[c] = quant::f32_to_fp8(x - simd::f16_to_f32_scalar(h));
  }
}

void load_k_refs(const uint8_t* params, uint32_t d, float* ref) {
  for (uint32_t c = 0; c < d; ++c) ref[c] = load_scale(params + 2 * c);
}

void decode_k_fp8(const uint8_t* row, const float* ref, uint32_t d, float* dst) {
  decode_fp8(row, d, dst);
  for (uint32_t c = 0; c < d; ++c) dst[c] = ref[c] + dst[c];
}

void encode_row(const float* src, KvFormat format, uint32_t n, uint8_t* row, uint8_t* scale) {
  const simd::Kernels& k = simd::active();
  switch (format) {
    case KvFormat::F32: std::memcpy(row, src, n * sizeof(float)); return;
    case KvFormat::F16: k.f32_to_f16(src, reinterpret_cast<uint16_t*>(row), n); return;
    case KvFormat::BF16: k.f32_to_bf16(src, reinterpret_cast<uint16_t*>(row), n); return;
    case KvFormat::Fp8E4M3:
      for (uint32_t i = 0; i < n; ++i) row[i] = quant::f32_to_fp8(src[i]);
      return;
    case KvFormat::Int8: encode_int8(src, n, row, scale); return;
    case KvFormat::Int4: encode_int4(src, n, row, scale); return;
  }
}

const float* decode_row(const uint8_t* row, const uint8_t* scale, KvFormat format, uint32_t n, float* dst) {
  const simd::Kernels& k = simd::active();
  switch (format) {
    case KvFormat::F32: return reinterpret_cast<const float*>(row);
    case KvFormat::F16: k.f16_to_f32(reinterpret_cast<const uint16_t*>(row), dst, n); break;
    case KvFormat::BF16: k.bf16_to_f32(reinterpret_cast<const uint16_t*>(row), dst, n); break;
    case KvFormat::Fp8E4M3: decode_fp8(row, n, dst); break;
    case KvFormat::Int8: decode_int8(row, load_scale(scale), n, dst); break;
    case KvFormat::Int4: decode_int4(row, load_scale(scale), n, dst); break;
  }
  return dst;
}

}  // namespace fineserve::kv
