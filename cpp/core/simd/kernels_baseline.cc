// Portable kernels: what any x86-64 (or other) CPU runs when no vector extension is usable.
#include "simd/exp_poly.h"
#include "simd/half.h"
#include "simd/variants.h"

namespace fineserve::simd {
namespace {

float dot_f32(const float* a, const float* b, size_t n) {
  // Four partial sums break the dependency chain so the compiler can pipeline the adds.
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32_scalar(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32_scalar(src[i]);
}

void f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_f16_scalar(src[i]);
}

void f32_to_bf16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_bf16_scalar(src[i]);
}

void axpy_f32(float a, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// The 16-bit dots sum in exactly dot_f32's order (widening is exact), so linear()'s fused path for
// a few tokens and its widen-then-dot_f32 path for more give a token the same bits: batch invariance.
template <float (*Widen)(uint16_t)>
float dot_half_f32(const uint16_t* a, const float* b, size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += Widen(a[i]) * b[i];
    s1 += Widen(a[i + 1]) * b[i + 1];
    s2 += Widen(a[i + 2]) * b[i + 2];
    s3 += Widen(a[i + 3]) * b[i + 3];
  }
  for (; i < n; ++i) s0 += Widen(a[i]) * b[i];
  return (s0 + s1) + (s2 + s3);
}

float dot_f16_f32(const uint16_t* a, const float* b, size_t n) { return dot_half_f32<f16_to_f32_scalar>(a, b, n); }
float dot_bf16_f32(const uint16_t* a, const float* b, size_t n) { return dot_half_f32<bf16_to_f32_scalar>(a, b, n); }

void silu_mul_f32(const float* gate, const float* up, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = exp_poly::silu_mul(gate[i], up[i]);
}

}  // namespace

const Kernels kBaselineKernels = {Level::Baseline, dot_f32,     f16_to_f32,  bf16_to_f32, f32_to_f16,
                                  f32_to_bf16,     axpy_f32,    dot_f16_f32, dot_bf16_f32,
                                  silu_mul_f32};

}  // namespace fineserve::simd
