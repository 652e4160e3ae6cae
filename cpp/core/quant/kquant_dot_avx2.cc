// AVX2 Q4_K / Q6_K x Q8_K dots (arithmetic in kquant_dot.h). A super-block's weight codes are
// unpacked into registers once and used for every token of the call; per token, maddubs of the
// unsigned codes with the signed activation bytes gives int16 pair sums, madd with the sub-block
// scales widens them to int32, and the super-block's int32 total is reduced to one integer before
// its single float step, so the result is bit-identical to the portable kernel.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "quant/kquant_dot.h"
#include "quant/kquant_scales.h"
#include "quant/row_bytes.h"

namespace fineserve::quant::kquant::avx2 {
namespace {

int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

__m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 int16 lanes: lanes 0-7 = lo, lanes 8-15 = hi (the two 16-element halves of a 32-byte maddubs).
__m256i scale_pair(int lo, int hi) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(hi)), _mm_set1_epi16(static_cast<int16_t>(lo)));
}

// Sums of each token, kept across super-blocks (resized per call, per thread).
thread_local std::vector<float> sums;

void finish(const Q8K& a, size_t r, const float* bias, float* y, size_t y_stride) {
  for (size_t t = 0; t < a.tokens; ++t) y[t * y_stride + r] = bias != nullptr ? sums[t] + bias[r] : sums[t];
}

}  // namespace

void dot_q4_k(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r0, size_t r1, const float* bias, float* y,
              size_t y_stride) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  sums.resize(a.tokens);
  for (size_t r = r0; r < r1; ++r) {
    std::fill(sums.begin(), sums.end(), 0.0f);
    for (size_t b = 0; b < a.blocks; ++b) {
      const uint8_t* blk = w + r * w_stride + b * 144;
      _mm_prefetch(reinterpret_cast<const char*>(blk + 144), _MM_HINT_T0);
      const float d = f16_at(blk), dmin = f16_at(blk + 2);
      int sc[8], mn[8];
      for (int j = 0; j < 8; ++j) q4_k_scale_min(blk + 4, j, &sc[j], &mn[j]);
      __m256i lo[4], hi[4], scl[4], sch[4];
      for (int k = 0; k < 4; ++k) {
        const __m256i q = load256(blk + 16 + 32 * k);
        lo[k] = _mm256_and_si256(q, low4);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        scl[k] = _mm256_set1_epi16(static_cast<int16_t>(sc[2 * k]));
        sch[k] = _mm256_set1_epi16(static_cast<int16_t>(sc[2 * k + 1]));
      }
      // Each min covers two 16-sums of bsums: lanes 2j and 2j + 1 both get m_j.
      const __m256i mins = _mm256_setr_epi16(mn[0], mn[0], mn[1], mn[1], mn[2], mn[2], mn[3], mn[3], mn[4], mn[4],
                                             mn[5], mn[5], mn[6], mn[6], mn[7], mn[7]);
      for (size_t t = 0; t < a.tokens; ++t) {
        const size_t i = t * a.blocks + b;
        const int8_t* q8 = a.q.data() + i * kSuper;
        __m256i acc = _mm256_setzero_si256();
        for (int k = 0; k < 4; ++k) {
          const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[k], load256(q8 + 64 * k)), scl[k]);
          const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi[k], load256(q8 + 64 * k + 32)), sch[k]);
          acc = _mm256_add_epi32(acc, _mm256_add_epi32(p0, p1));
        }
        const int32_t m = hsum_i32(_mm256_madd_epi16(load256(a.bsums.data() + i * 16), mins));
        const float dx = a.d[i];
        sums[t] = std::fma(d * dx, static_cast<float>(hsum_i32(acc)), sums[t]);
        sums[t] = std::fma(-(dmin * dx), static_cast<float>(m), sums[t]);
      }
    }
    finish(a, r, bias, y, y_stride);
  }
}

void dot_q6_k(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r0, size_t r1, const float* bias, float* y,
              size_t y_stride) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
  sums.resize(a.tokens);
  for (size_t r = r0; r < r1; ++r) {
    std::fill(sums.begin(), sums.end(), 0.0f);
    for (size_t b = 0; b < a.blocks; ++b) {
      const uint8_t* blk = w + r * w_stride + b * 210;
      _mm_prefetch(reinterpret_cast<const char*>(blk + 210), _MM_HINT_T0);
      const float d = f16_at(blk + 208);
      const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
      // q[4h + g]: elements 128h + 32g .. + 31 as unsigned 6-bit codes; scales of their two 16s.
      __m256i q[8], scale[8];
      for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = load256(blk + 64 * h), ql1 = load256(blk + 64 * h + 32);
        const __m256i qh = load256(blk + 128 + 32 * h);
        q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45));
        q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45));
        q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45));
        q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45));
        for (int g = 0; g < 4; ++g) scale[4 * h + g] = scale_pair(sc[8 * h + 2 * g], sc[8 * h + 2 * g + 1]);
      }
      const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
      for (size_t t = 0; t < a.tokens; ++t) {
        const size_t i = t * a.blocks + b;
        const int8_t* q8 = a.q.data() + i * kSuper;
        __m256i acc = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], load256(q8 + 32 * k)), scale[k]));
        }
        const int32_t m = hsum_i32(_mm256_madd_epi16(load256(a.bsums.data() + i * 16), scales16));
        sums[t] = std::fma(d * a.d[i], static_cast<float>(hsum_i32(acc) - 32 * m), sums[t]);
      }
    }
    finish(a, r, bias, y, y_stride);
  }
}

}  // namespace fineserve::quant::kquant::avx2
