// Q8_K activations and the portable Q4_K / Q6_K integer dots (the arithmetic in kquant_dot.h; the
// AVX2 kernels reproduce it bit for bit).
#include "quant/kquant_dot.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "quant/kquant_scales.h"
#include "quant/row_bytes.h"

namespace fineserve::quant::kquant {

namespace {

// Round half to even for |v| < 2^22 without a libm call (the baseline build has no SSE4.1 round):
// adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits.
int round_even(float v) {
  const float shifted = v + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace

void quantize_q8_k(const float* x, size_t tokens, size_t cols, Q8K& out) {
  const size_t blocks = cols / kSuper;
  out.tokens = tokens;
  out.blocks = blocks;
  out.q.resize(tokens * blocks * kSuper);
  out.d.resize(tokens * blocks);
  out.bsums.resize(tokens * blocks * 16);
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t b = 0; b < blocks; ++b) {
      const float* xb = x + t * cols + b * kSuper;
      const size_t i = t * blocks + b;
      int8_t* q = out.q.data() + i * kSuper;
      int16_t* sums = out.bsums.data() + i * 16;
      float max = 0, amax = 0;
      for (size_t j = 0; j < kSuper; ++j) {
        if (std::fabs(xb[j]) > amax) {
          amax = std::fabs(xb[j]);
          max = xb[j];
        }
      }
      if (amax == 0) {
        out.d[i] = 0;
        std::memset(q, 0, kSuper);
        std::memset(sums, 0, 16 * sizeof(int16_t));
        continue;
      }
      // The largest magnitude maps to -127 (a signed max keeps its sign's side of the range).
      const float inv = -127.0f / max;
      for (size_t j = 0; j < kSuper; ++j) q[j] = static_cast<int8_t>(std::min(127, round_even(inv * xb[j])));
      for (size_t g = 0; g < 16; ++g) {
        int s = 0;
        for (size_t l = 0; l < 16; ++l) s += q[16 * g + l];
        sums[g] = static_cast<int16_t>(s);
      }
      out.d[i] = 1 / inv;
    }
  }
}

namespace {

// Runs block(super-block bytes, token's Q8_K codes, its bsums, its d, sum) over every super-block of
// rows [r0, r1) for every token, in order; block returns the updated sum.
template <size_t kBlockBytes, class Block>
void dot_rows(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r0, size_t r1, const float* bias, float* y,
              size_t y_stride, const Block& block) {
  for (size_t r = r0; r < r1; ++r) {
    for (size_t t = 0; t < a.tokens; ++t) {
      float sum = 0;
      for (size_t b = 0; b < a.blocks; ++b) {
        const size_t i = t * a.blocks + b;
        sum = block(w + r * w_stride + b * kBlockBytes, a.q.data() + i * kSuper, a.bsums.data() + i * 16, a.d[i], sum);
      }
      y[t * y_stride + r] = bias != nullptr ? sum + bias[r] : sum;
    }
  }
}

}  // namespace

void dot_q4_k(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r0, size_t r1, const float* bias, float* y,
              size_t y_stride) {
  dot_rows<144>(w, w_stride, a, r0, r1, bias, y, y_stride,
                [](const uint8_t* blk, const int8_t* q8, const int16_t* bs, float dx, float sum) {
                  int32_t s = 0, m = 0;
                  for (int j = 0; j < 8; ++j) {
                    int sc, mn;
                    q4_k_scale_min(blk + 4, j, &sc, &mn);
                    const uint8_t* qs = blk + 16 + 32 * (j / 2);
                    int32_t dot = 0;
                    for (int l = 0; l < 32; ++l) dot += (j % 2 == 0 ? qs[l] & 15 : qs[l] >> 4) * q8[32 * j + l];
                    s += sc * dot;
                    m += mn * (bs[2 * j] + bs[2 * j + 1]);
                  }
                  sum = std::fma(f16_at(blk) * dx, static_cast<float>(s), sum);
                  return std::fma(-(f16_at(blk + 2) * dx), static_cast<float>(m), sum);
                });
}

void dot_q6_k(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r0, size_t r1, const float* bias, float* y,
              size_t y_stride) {
  dot_rows<210>(w, w_stride, a, r0, r1, bias, y, y_stride,
                [](const uint8_t* blk, const int8_t* q8, const int16_t* bs, float dx, float sum) {
                  const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
                  int32_t s = 0, m = 0;
                  for (int h = 0; h < 2; ++h) {  // halves of 128: four groups of 32 (weight_format.h)
                    const uint8_t* ql = blk + 64 * h;
                    const uint8_t* qh = blk + 128 + 32 * h;
                    const int8_t* x = q8 + 128 * h;
                    for (int half16 = 0; half16 < 2; ++half16) {
                      int32_t g[4] = {0, 0, 0, 0};
                      for (int l = 16 * half16; l < 16 * half16 + 16; ++l) {
                        g[0] += ((ql[l] & 15) | (qh[l] & 3) << 4) * x[l];
                        g[1] += ((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) * x[l + 32];
                        g[2] += ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) * x[l + 64];
                        g[3] += ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) * x[l + 96];
                      }
                      for (int k = 0; k < 4; ++k) s += sc[8 * h + 2 * k + half16] * g[k];
                    }
                  }
                  for (int j = 0; j < 16; ++j) m += sc[j] * bs[j];
                  return std::fma(f16_at(blk + 208) * dx, static_cast<float>(s - 32 * m), sum);
                });
}

DotFn dot_kernel(model::DType t, simd::Level level) {
#if defined(FINESERVE_HAVE_AVX2)
  static const DotFn q4[simd::kLevelCount] = {dot_q4_k, avx2::dot_q4_k, nullptr};
  static const DotFn q6[simd::kLevelCount] = {dot_q6_k, avx2::dot_q6_k, nullptr};
#else
  static const DotFn q4[simd::kLevelCount] = {dot_q4_k, nullptr, nullptr};
  static const DotFn q6[simd::kLevelCount] = {dot_q6_k, nullptr, nullptr};
#endif
  if (t == model::DType::Q4_K) return simd::resolve_kernel(q4, level);
  if (t == model::DType::Q6_K) return simd::resolve_kernel(q6, level);
  return nullptr;
}

bool enabled() {
  const char* v = std::getenv("FINESERVE_KQUANT_DOT");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

}  // namespace fineserve::quant::kquant
