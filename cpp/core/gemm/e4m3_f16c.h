// Scalars and vectors of the f16 and E4M3 fields that the AVX2 and AVX-512 GEMM kernels read
// (weight_format.h). Internal linkage: each kernel file compiles its own copy with its own ISA
// flags, so a wider level's copy can never stand in for a narrower one's. Include only from
// translation units compiled with at least AVX2 and F16C.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "model/tensor.h"

namespace fineserve::gemm {
namespace {

inline float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// E4M3 bytes -> f16 bit patterns worth value * 2^-8 (S.EEEE.MMM -> S.0EEEE.MMM0000000), which
// F16C widens exactly, subnormals included; see qdot_avx2.cc.
inline __m256i e4m3_to_f16_bits(__m256i v16) {
  return _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(v16, _mm256_set1_epi16(0x7F)), 7),
                         _mm256_slli_epi16(_mm256_and_si256(v16, _mm256_set1_epi16(0x80)), 8));
}

inline float e4m3_at(uint8_t b) {
  const uint16_t h = static_cast<uint16_t>(((b & 0x7F) << 7) | ((b & 0x80) << 8));
  return _cvtsh_ss(h) * 256.0f;
}

// An int4 row's group g as n * scale + offset (weight_format.h). W4A16: the f16 scale and min;
// W4A8: the E4M3 group scale times the row's power-of-two scale `rs`, offset -8 times that
// (exact). Either way n * scale is exact in f32, so the decode rounds once, fused or not.
struct Int4Group {
  float scale, offset;
};
template <model::DType T>
inline Int4Group int4_group(const uint8_t* row, size_t g, float rs) {
  if constexpr (T == model::DType::W4A16) return {f16_at(row + 4 * g), f16_at(row + 4 * g + 2)};
  const float scale = e4m3_at(row[4 + g]) * rs;
  return {scale, -8.0f * scale};
}

}  // namespace
}  // namespace fineserve::gemm
