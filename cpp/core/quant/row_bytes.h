// Reading the scalar fields of a quantized row (layouts in weight_format.h): unaligned
// little-endian f16/f32 and the Q4_0-style packed nibbles, for the portable decoders and kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd/half.h"

namespace fineserve::quant {

inline float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return simd::f16_to_f32_scalar(h);
}

inline float f32_at(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// Element k of a run of 32-element sub-blocks packed in 16 bytes each: element j < 16 in the low
// nibble of byte j, element j + 16 in the high nibble.
inline int nibble(const uint8_t* data, size_t k) {
  const uint8_t byte = data[k / 32 * 16 + k % 16];
  return (k % 32) < 16 ? byte & 15 : byte >> 4;
}

}  // namespace fineserve::quant
