// exp(x) for x <= 0 by Cephes expf's method (Cody-Waite reduction by ln 2, degree-6 polynomial),
// within 2e-7 relative. libm's expf is scalar; the SIMD kernels run these same steps in lanes.
// Inputs below about -87.7 give exactly 0 (they round to n = -127, whose 2^n bit pattern is +0;
// clamping at -88 keeps -inf there too).
#pragma once

#include <cstdint>
#include <cstring>

namespace fineserve::simd::exp_poly {

constexpr float kLo = -88.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
constexpr int32_t kRoundBits = 0x4B400000;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

// The same operations in the same order as the SSE2 lanes of the sampler, so a row's scalar tail
// agrees with its body there.
inline float exp_nonpos(float x) {
  x = x < kLo ? kLo : x;
  float k = x * kLog2e + kRound;
  float n = k - kRound;
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kP0;
  p = p * r + kP1;
  p = p * r + kP2;
  p = p * r + kP3;
  p = p * r + kP4;
  p = p * r + kP5;
  float y = p * r * r + r + 1.0f;
  int32_t kb;
  std::memcpy(&kb, &k, sizeof kb);
  uint32_t sbits = static_cast<uint32_t>(kb - kRoundBits + 127) << 23;
  float scale;
  std::memcpy(&scale, &sbits, sizeof scale);
  return y * scale;
}

// silu(g) * u with sigmoid from exp(-|g|) only, which never overflows: for g >= 0 it is
// 1 / (1 + e), for g < 0 it is e / (1 + e).
inline float silu_mul(float g, float u) {
  float e = exp_nonpos(g < 0 ? g : -g);
  float s = (g < 0 ? e : 1.0f) / (1.0f + e);
  return g * s * u;
}

}  // namespace fineserve::simd::exp_poly
