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

namespace fineserve::quant::kquant::avx2 {
namespace {

int32_t hsum_i32_128(__m128i s) {
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

int32_t hsum_i32(__m256i v) { return hsum_i32_128(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1))); }

// An f16 field in one instruction (F16C); exact, as the portable f16_at.
float half_at(const uint8_t* p) { return _cvtsh_ss(static_cast<uint16_t>(p[0] | p[1] << 8)); }

__m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Sums of each token, kept across super-blocks (resized per call, per thread).
thread_local std::vector<float> token_sums;

float* sums_for(size_t tokens) {
  token_sums.resize(tokens);
  return token_sums.data();
}

void finish(const float* sums, size_t tokens, size_t r, const float* bias, float* y, size_t y_stride) {
  for (size_t t = 0; t < tokens; ++t) y[t * y_stride + r] = bias != nullptr ? sums[t] + bias[r] : sums[t];
}

// Shuffle masks that copy int16 lane `lo` of a 128-bit half to lanes 0-7 and lane `hi` of the
// other half's copy to lanes 8-15 (a vector whose two halves hold the same eight int16).
__m256i lane_pair(int lo, int hi) {
  const int16_t a = static_cast<int16_t>((2 * lo + 1) << 8 | 2 * lo), b = static_cast<int16_t>((2 * hi + 1) << 8 | 2 * hi);
  return _mm256_set_m128i(_mm_set1_epi16(b), _mm_set1_epi16(a));
}

// Q4_K's 12 scale bytes as 16 bytes: the eight 6-bit scales, then the eight 6-bit mins
// (layout in weight_format.h, four sub-blocks per 32-bit word).
__m128i q4_k_scales_mins(const uint8_t* s) {
  uint32_t u[4];
  std::memcpy(u, s, 12);
  const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
  const uint32_t mins_hi = ((u[2] >> 4) & low4) | ((u[1] >> 6) & low2) << 4;
  const uint32_t mins_lo = u[1] & low6;
  const uint32_t scales_hi = (u[2] & low4) | ((u[0] >> 6) & low2) << 4;
  const uint32_t scales_lo = u[0] & low6;
  return _mm_setr_epi32(static_cast<int>(scales_lo), static_cast<int>(scales_hi), static_cast<int>(mins_lo),
                        static_cast<int>(mins_hi));
}

}  // namespace

// One token, NR rows at once: the token's activation bytes and block sums are loaded once for all
// of them, and the rows' independent chains overlap. Per row the arithmetic is dot_q4_k's.
template <int NR>
void q4_k_one_token(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r, const __m256i* pick, float* out) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  float sum[NR] = {};
  for (size_t b = 0; b < a.blocks; ++b) {
    const int8_t* q8 = a.q.data() + b * kSuper;
    const __m256i bs = load256(a.bsums.data() + b * 16);
    const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    const float dx = a.d[b];
    for (int n = 0; n < NR; ++n) {
      const uint8_t* blk = w + (r + n) * w_stride + b * 144;
      _mm_prefetch(reinterpret_cast<const char*>(blk + 144), _MM_HINT_T0);
      const __m256i sm16 = _mm256_cvtepu8_epi16(q4_k_scales_mins(blk + 4));
      const __m256i scales = _mm256_permute2x128_si256(sm16, sm16, 0x00);
      __m256i acc = _mm256_setzero_si256();
      for (int k = 0; k < 4; ++k) {
        const __m256i q = load256(blk + 16 + 32 * k);
        const __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(q, low4), load256(q8 + 64 * k));
        const __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), load256(q8 + 64 * k + 32));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(scales, pick[2 * k])));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(scales, pick[2 * k + 1])));
      }
      const int32_t m = hsum_i32_128(_mm_madd_epi16(pairs, _mm256_extracti128_si256(sm16, 1)));
      sum[n] = std::fma(half_at(blk) * dx, static_cast<float>(hsum_i32(acc)), sum[n]);
      sum[n] = std::fma(-(half_at(blk + 2) * dx), static_cast<float>(m), sum[n]);
    }
  }
  for (int n = 0; n < NR; ++n) out[n] = sum[n];
}

void dot_q4_k(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r0, size_t r1, const float* bias, float* y,
              size_t y_stride) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  // Sub-block j's scale in every int16 lane, from a vector holding the eight scales in each half.
  __m256i pick[8];
  for (int j = 0; j < 8; ++j) pick[j] = lane_pair(j, j);
  if (a.tokens == 1) {
    size_t r = r0;
    float out[2];
    for (; r + 2 <= r1; r += 2) {
      q4_k_one_token<2>(w, w_stride, a, r, pick, out);
      for (int n = 0; n < 2; ++n) y[r + n] = bias != nullptr ? out[n] + bias[r + n] : out[n];
    }
    if (r < r1) {
      q4_k_one_token<1>(w, w_stride, a, r, pick, out);
      y[r] = bias != nullptr ? out[0] + bias[r] : out[0];
    }
    return;
  }
  float* sums = sums_for(a.tokens);
  for (size_t r = r0; r < r1; ++r) {
    // One token (decode): its sum stays in a register, not in memory from one super-block to the next.
    float one = 0.0f;
    std::fill(sums, sums + a.tokens, 0.0f);
    for (size_t b = 0; b < a.blocks; ++b) {
      const uint8_t* blk = w + r * w_stride + b * 144;
      _mm_prefetch(reinterpret_cast<const char*>(blk + 144), _MM_HINT_T0);
      const float d = half_at(blk), dmin = half_at(blk + 2);
      const __m256i sm16 = _mm256_cvtepu8_epi16(q4_k_scales_mins(blk + 4));  // scales, then mins
      const __m256i scales = _mm256_permute2x128_si256(sm16, sm16, 0x00);
      const __m128i mins = _mm256_extracti128_si256(sm16, 1);
      __m256i lo[4], hi[4];
      for (int k = 0; k < 4; ++k) {
        const __m256i q = load256(blk + 16 + 32 * k);
        lo[k] = _mm256_and_si256(q, low4);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      }
      auto step = [&](size_t i, float sum) {
        const int8_t* q8 = a.q.data() + i * kSuper;
        __m256i acc = _mm256_setzero_si256();
        for (int k = 0; k < 4; ++k) {
          const __m256i p0 = _mm256_maddubs_epi16(lo[k], load256(q8 + 64 * k));
          const __m256i p1 = _mm256_maddubs_epi16(hi[k], load256(q8 + 64 * k + 32));
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(scales, pick[2 * k])));
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(scales, pick[2 * k + 1])));
        }
        // Each min covers two 16-sums of bsums.
        const __m256i bs = load256(a.bsums.data() + i * 16);
        const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        const int32_t m = hsum_i32_128(_mm_madd_epi16(pairs, mins));
        const float dx = a.d[i];
        sum = std::fma(d * dx, static_cast<float>(hsum_i32(acc)), sum);
        return std::fma(-(dmin * dx), static_cast<float>(m), sum);
      };
      if (a.tokens == 1) {
        one = step(b, one);
      } else {
        for (size_t t = 0; t < a.tokens; ++t) sums[t] = step(t * a.blocks + b, sums[t]);
      }
    }
    if (a.tokens == 1) sums[0] = one;
    finish(sums, a.tokens, r, bias, y, y_stride);
  }
}

void dot_q6_k(const uint8_t* w, size_t w_stride, const Q8K& a, size_t r0, size_t r1, const float* bias, float* y,
              size_t y_stride) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
  // Group g (of 32) within a half of eight scales: lanes 0-7 scale 2g, lanes 8-15 scale 2g + 1.
  __m256i pick[4];
  for (int g = 0; g < 4; ++g) pick[g] = lane_pair(2 * g, 2 * g + 1);
  float* sums = sums_for(a.tokens);
  for (size_t r = r0; r < r1; ++r) {
    float one = 0.0f;  // one token: kept in a register across super-blocks
    std::fill(sums, sums + a.tokens, 0.0f);
    for (size_t b = 0; b < a.blocks; ++b) {
      const uint8_t* blk = w + r * w_stride + b * 210;
      _mm_prefetch(reinterpret_cast<const char*>(blk + 210), _MM_HINT_T0);
      const float d = half_at(blk + 208);
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192)));
      if (a.tokens == 1) {  // decode: unpack and use each group at once (no arrays to spill)
        const int8_t* q8 = a.q.data() + b * kSuper;
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
          const __m256i ql0 = load256(blk + 64 * h), ql1 = load256(blk + 64 * h + 32);
          const __m256i qh = load256(blk + 128 + 32 * h);
          const __m256i half = (h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11));
          const __m256i q0 = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45));
          const __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45));
          const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45));
          const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45));
          const int8_t* x = q8 + 128 * h;
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q0, load256(x)), _mm256_shuffle_epi8(half, pick[0])));
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q1, load256(x + 32)), _mm256_shuffle_epi8(half, pick[1])));
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q2, load256(x + 64)), _mm256_shuffle_epi8(half, pick[2])));
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q3, load256(x + 96)), _mm256_shuffle_epi8(half, pick[3])));
        }
        const int32_t m = hsum_i32(_mm256_madd_epi16(load256(a.bsums.data() + b * 16), sc16));
        one = std::fma(d * a.d[b], static_cast<float>(hsum_i32(acc) - 32 * m), one);
        continue;
      }
      // q[4h + g]: elements 128h + 32g .. + 31 as unsigned 6-bit codes; scale[4h + g] their two scales.
      __m256i q[8], scale[8];
      for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = load256(blk + 64 * h), ql1 = load256(blk + 64 * h + 32);
        const __m256i qh = load256(blk + 128 + 32 * h);
        q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45));
        q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45));
        q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45));
        q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45));
        const __m256i half = (h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11));
        for (int g = 0; g < 4; ++g) scale[4 * h + g] = _mm256_shuffle_epi8(half, pick[g]);
      }
      for (size_t t = 0; t < a.tokens; ++t) {
        const size_t i = t * a.blocks + b;
        const int8_t* q8 = a.q.data() + i * kSuper;
        __m256i acc = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], load256(q8 + 32 * k)), scale[k]));
        }
        const int32_t m = hsum_i32(_mm256_madd_epi16(load256(a.bsums.data() + i * 16), sc16));
        sums[t] = std::fma(d * a.d[i], static_cast<float>(hsum_i32(acc) - 32 * m), sums[t]);
      }
    }
    if (a.tokens == 1) sums[0] = one;
    finish(sums, a.tokens, r, bias, y, y_stride);
  }
}

}  // namespace fineserve::quant::kquant::avx2
