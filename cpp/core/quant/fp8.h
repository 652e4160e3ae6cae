// FP8 E4M3 (the OCP "fn" variant used by H100 tensor cores, vLLM and FireQ): 1 sign, 4 exponent
// bits (bias 7), 3 mantissa bits, no infinities, S.1111.111 is NaN, largest finite value 448.
// Conversions round to nearest even and saturate to +-448, so a quantizer never makes a NaN.
// Header-only and host/device so the CPU kernels, the KV cache and CUDA code agree bit for bit.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define FINESERVE_FP8_HD __host__ __device__
#else
#define FINESERVE_FP8_HD
#endif

namespace fineserve::quant {

inline constexpr float kFp8Max = 448.0f;

// Exact: every E4M3 value is a float.
FINESERVE_FP8_HD inline float fp8_to_f32(uint8_t b) {
  const uint32_t sign = (b & 0x80u) << 24;
  const uint32_t exp = (b >> 3) & 0xFu, man = b & 0x7u;
  float v;
  if (exp == 0xF && man == 0x7) {
    uint32_t nan = 0x7FC00000u | sign;
    std::memcpy(&v, &nan, sizeof v);
    return v;
  }
  if (exp == 0) {
    v = static_cast<float>(man) * (1.0f / 512.0f);  // subnormal: man * 2^-9
  } else {
    uint32_t bits = ((exp + 120u) << 23) | (man << 20);  // rebias 7 -> 127
    std::memcpy(&v, &bits, sizeof v);
  }
  return sign ? -v : v;
}

// Round to nearest even, saturating; NaN in gives NaN out (0x7F with the sign).
FINESERVE_FP8_HD inline uint8_t f32_to_fp8(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7F);  // NaN
  float a;
  std::memcpy(&a, &abs_bits, sizeof a);
  if (a >= kFp8Max) return static_cast<uint8_t>(sign | 0x7E);  // saturate (also +-inf)
  if (a < 1.0f / 64.0f) {
    // Subnormal range: multiples of 2^-9. Round half to even on the integer count.
    float q = a * 512.0f;
    uint32_t n = static_cast<uint32_t>(q);
    float rem = q - static_cast<float>(n);
    if (rem > 0.5f || (rem == 0.5f && (n & 1u))) ++n;
    return static_cast<uint8_t>(sign | n);  // n == 8 is the smallest normal 0.0.0001.000: correct
  }
  // Normal: keep 3 mantissa bits of the f32, rounding half to even on the dropped 20 bits.
  uint32_t exp = (abs_bits >> 23) - 120u;  // >= 1 here
  uint32_t man = abs_bits & 0x7FFFFFu;
  uint32_t keep = man >> 20, rest = man & 0xFFFFFu;
  if (rest > 0x80000u || (rest == 0x80000u && (keep & 1u))) {
    if (++keep == 8) {
      keep = 0;
      ++exp;
    }
  }
  if (exp > 15 || (exp == 15 && keep == 7)) return static_cast<uint8_t>(sign | 0x7E);
  return static_cast<uint8_t>(sign | (exp << 3) | keep);
}

}  // namespace fineserve::quant
