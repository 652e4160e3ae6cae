// AVX2 + FMA attention kernels (attention_kernels.h), compiled with -mavx2 -mfma -mf16c. Scores
// take a 4-row x 16-key tile of accumulators (one 8-key vector of the transposed keys feeds four
// query rows); the value sum a 2-row x 32-channel tile (one value vector feeds two rows).
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ops/attention_exp2.h"
#include "ops/attention_kernels.h"
#include "simd/clean_exit.h"

namespace fineserve::ops {
namespace {

// The register tiles' loops over rows and vectors unrolled first: at -O3 GCC 12 otherwise keeps
// the accumulator arrays in memory as well, with a store per update inside the hot loops.
#define FS_UNROLL _Pragma("GCC unroll 16")

inline __m256 exp2_ps(__m256 x) {
  using namespace exp2_poly;
  const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(kMin), _CMP_GE_OQ);  // false for NaN too
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kMin)), _mm256_set1_ps(kMax));
  const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(x, n);
  __m256 p = _mm256_set1_ps(kC[7]);
  FS_UNROLL for (int k = 6; k >= 0; --k) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC[k]));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

// Lanes i with i < n (n may be <= 0) all ones.
inline __m256 below(long n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int clamped = n > 8 ? 8 : (n < 0 ? 0 : static_cast<int>(n));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(clamped), lane));
}

// E4M3 as kv_codec.cc decodes it: the 7 magnitude bits at f32 bit 20, times 2^120, S.1111.111 NaN.
inline __m256 fp8_8(const uint8_t* codes) {
  const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes)));
  const __m256i mag = _mm256_and_si256(b, _mm256_set1_epi32(0x7F));
  __m256i bits = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x80)), 24), _mm256_slli_epi32(mag, 20));
  bits = _mm256_or_si256(bits, _mm256_and_si256(_mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7F)), _mm256_set1_epi32(0x7FC00000)));
  return _mm256_mul_ps(_mm256_castsi256_ps(bits), _mm256_set1_ps(0x1p120f));
}

void fp8_row(const uint8_t* codes, size_t n, const float* ref, float* dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = fp8_8(codes + i);
    if (ref != nullptr) x = _mm256_add_ps(_mm256_loadu_ps(ref + i), x);
    _mm256_storeu_ps(dst + i, x);
  }
  if (i < n) {  // the last n % 8 codes through a zero-padded copy
    uint8_t tail[8] = {};
    std::memcpy(tail, codes + i, n - i);
    float x[8];
    _mm256_storeu_ps(x, fp8_8(tail));
    for (size_t j = 0; i + j < n; ++j) dst[i + j] = ref != nullptr ? ref[i + j] + x[j] : x[j];
  }
}

// 16 nibbles of 8 bytes in element order (byte i's low nibble, then its high one), as 2 x 8 int32.
inline void nibbles16(const uint8_t* codes, __m256i* lo8, __m256i* hi8) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i q = _mm_unpacklo_epi8(_mm_and_si128(b, mask), _mm_and_si128(_mm_srli_epi16(b, 4), mask));
  *lo8 = _mm256_cvtepu8_epi32(q);
  *hi8 = _mm256_cvtepu8_epi32(_mm_srli_si128(q, 8));
}

void int4_k_row(const uint8_t* codes, const float* step, const float* minimum, size_t n, float* dst) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i q[2];
    nibbles16(codes + i / 2, &q[0], &q[1]);
    FS_UNROLL for (int h = 0; h < 2; ++h) {
      const size_t c = i + 8 * h;
      // step * q is exact (an f16 step times 0..15), so a fused add rounds as kv_codec's does.
      _mm256_storeu_ps(dst + c, _mm256_fmadd_ps(_mm256_loadu_ps(step + c), _mm256_cvtepi32_ps(q[h]), _mm256_loadu_ps(minimum + c)));
    }
  }
  for (; i < n; i += 2) {
    const uint32_t b = codes[i / 2];
    dst[i] = std::fma(step[i], static_cast<float>(b & 0xFu), minimum[i]);
    dst[i + 1] = std::fma(step[i + 1], static_cast<float>(b >> 4), minimum[i + 1]);
  }
}

void int4_v_row(const uint8_t* codes, float scale, size_t n, float* dst) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i eight = _mm256_set1_epi32(8);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i q[2];
    nibbles16(codes + i / 2, &q[0], &q[1]);
    FS_UNROLL for (int h = 0; h < 2; ++h) {  // (q ^ 8) - 8 sign-extends a nibble
      const __m256i signed_q = _mm256_sub_epi32(_mm256_xor_si256(q[h], eight), eight);
      _mm256_storeu_ps(dst + i + 8 * h, _mm256_mul_ps(s, _mm256_cvtepi32_ps(signed_q)));
    }
  }
  for (; i < n; i += 2) {
    const auto b = static_cast<int8_t>(codes[i / 2]);
    dst[i] = scale * static_cast<float>(static_cast<int8_t>(b << 4) >> 4);
    dst[i + 1] = scale * static_cast<float>(b >> 4);
  }
}

// 8 x 8 blocks through registers (rows past n read as zero), the channels past a multiple of 8 one
// by one.
void transpose(const float* rows, size_t n, size_t d, float* kt, size_t kp) {
  const size_t d8 = d / 8 * 8;
  for (size_t i0 = 0; i0 < kp; i0 += 8) {
    for (size_t c0 = 0; c0 < d8; c0 += 8) {
      __m256 r[8];
      for (size_t i = 0; i < 8; ++i) r[i] = i0 + i < n ? _mm256_loadu_ps(rows + (i0 + i) * d + c0) : _mm256_setzero_ps();
      __m256 t[8], s[8];
      FS_UNROLL for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
      }
      FS_UNROLL for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
      }
      FS_UNROLL for (int j = 0; j < 4; ++j) {
        _mm256_storeu_ps(kt + (c0 + j) * kp + i0, _mm256_permute2f128_ps(s[j], s[j + 4], 0x20));
        _mm256_storeu_ps(kt + (c0 + j + 4) * kp + i0, _mm256_permute2f128_ps(s[j], s[j + 4], 0x31));
      }
    }
    for (size_t c = d8; c < d; ++c) {
      for (size_t i = i0; i < i0 + 8; ++i) kt[c * kp + i] = i < n ? rows[i * d + c] : 0.0f;
    }
  }
}

template <int R, int V>
inline void score_tile(const float* q, size_t d, const float* kt, size_t kp, float* s) {
  __m256 acc[R * V];
  FS_UNROLL for (int i = 0; i < R * V; ++i) acc[i] = _mm256_setzero_ps();
  const float* kc = kt;
  for (size_t c = 0; c < d; ++c, kc += kp) {
    __m256 k[V];
    FS_UNROLL for (int v = 0; v < V; ++v) k[v] = _mm256_loadu_ps(kc + 8 * v);
    FS_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 qb = _mm256_broadcast_ss(q + r * d + c);
      FS_UNROLL for (int v = 0; v < V; ++v) acc[r * V + v] = _mm256_fmadd_ps(qb, k[v], acc[r * V + v]);
    }
  }
  FS_UNROLL for (int r = 0; r < R; ++r) {
    FS_UNROLL for (int v = 0; v < V; ++v) _mm256_storeu_ps(s + r * kp + 8 * v, acc[r * V + v]);
  }
}

template <int V, int RMax>
void score_rows(const float* q, size_t rows, size_t d, const float* kt, size_t kp, float* s) {
  size_t r = 0;
  for (; r + RMax <= rows; r += RMax) score_tile<RMax, V>(q + r * d, d, kt, kp, s + r * kp);
  switch (rows - r) {
    case 1: score_tile<1, V>(q + r * d, d, kt, kp, s + r * kp); break;
    case 2: score_tile<2, V>(q + r * d, d, kt, kp, s + r * kp); break;
    case 3: score_tile<3, V>(q + r * d, d, kt, kp, s + r * kp); break;
    case 4: score_tile<4, V>(q + r * d, d, kt, kp, s + r * kp); break;
    case 5: if constexpr (RMax > 5) score_tile<5, V>(q + r * d, d, kt, kp, s + r * kp); break;
    case 6: if constexpr (RMax > 6) score_tile<6, V>(q + r * d, d, kt, kp, s + r * kp); break;
    case 7: if constexpr (RMax > 7) score_tile<7, V>(q + r * d, d, kt, kp, s + r * kp); break;
    default: break;
  }
}

void scores(const float* q, size_t rows, size_t d, const float* kt, size_t kp, float* s) {
  size_t v = 0;
  for (; v + 16 <= kp; v += 16) score_rows<2, 4>(q, rows, d, kt + v, kp, s + v);
  if (v < kp) score_rows<1, 8>(q, rows, d, kt + v, kp, s + v);
}

float softmax(float* s, size_t kp, size_t n, float* m, float* l) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __m256 ninf = _mm256_set1_ps(neg_inf);
  __m256 vmax = ninf;
  for (size_t i = 0; i < kp; i += 8) {
    vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(ninf, _mm256_loadu_ps(s + i), below(long(n) - long(i))));
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  const float mx = _mm_cvtss_f32(h);
  const float m_new = *m > mx ? *m : mx;
  // exp2_ps(0) is exactly 1: an unchanged maximum skips the polynomial without changing a bit.
  const float alpha = *m == neg_inf ? 0.0f : *m == m_new ? 1.0f : _mm256_cvtss_f32(exp2_ps(_mm256_set1_ps(*m - m_new)));
  const __m256 mb = _mm256_set1_ps(m_new);
  __m256 sum = _mm256_setzero_ps();
  for (size_t i = 0; i < kp; i += 8) {
    const __m256 p = _mm256_and_ps(exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), mb)), below(long(n) - long(i)));
    _mm256_storeu_ps(s + i, p);
    sum = _mm256_add_ps(sum, p);
  }
  // ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7)), as the baseline kernel adds them.
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
  *l = *l * alpha + _mm_cvtss_f32(t);
  *m = m_new;
  return alpha;
}

// One row's keys [i0, i1) into channels [c0, c0 + 8 NV) of its accumulator.
template <int NV>
inline void acc_keys(const float* p, uint32_t i0, uint32_t i1, const float* v, size_t d, float* acc, size_t c0) {
  __m256 a[NV];
  FS_UNROLL for (int j = 0; j < NV; ++j) a[j] = _mm256_loadu_ps(acc + c0 + 8 * j);
  for (uint32_t i = i0; i < i1; ++i) {
    const __m256 w = _mm256_broadcast_ss(p + i);
    FS_UNROLL for (int j = 0; j < NV; ++j) a[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + i * d + c0 + 8 * j), a[j]);
  }
  FS_UNROLL for (int j = 0; j < NV; ++j) _mm256_storeu_ps(acc + c0 + 8 * j, a[j]);
}

// Rows r < R of acc, channels [c0, c0 + 8 NV): the keys every row sees with the rows side by side
// (the accumulators stay in registers), then each row's remaining keys alone.
template <int R, int NV>
inline void acc_tile(const float* p, size_t kp, const float* alpha, const uint32_t* n, const float* v, size_t d,
                     float* acc, size_t c0) {
  __m256 a[R * NV];
  uint32_t common = n[0];
  FS_UNROLL for (int r = 0; r < R; ++r) {
    common = n[r] < common ? n[r] : common;
    // Times 1 is exact: multiplying unconditionally is the same as skipping alpha == 1.
    const __m256 al = _mm256_set1_ps(alpha[r]);
    FS_UNROLL for (int j = 0; j < NV; ++j) a[r * NV + j] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * d + c0 + 8 * j), al);
  }
  const float* vi = v + c0;
  for (uint32_t i = 0; i < common; ++i, vi += d) {
    __m256 vv[NV];
    FS_UNROLL for (int j = 0; j < NV; ++j) {
      vv[j] = _mm256_loadu_ps(vi + 8 * j);
      __asm__("" : "+x"(vv[j]));  // one load per vector for all R rows (GCC would fold one per row)
    }
    FS_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 w = _mm256_broadcast_ss(p + r * kp + i);
      FS_UNROLL for (int j = 0; j < NV; ++j) a[r * NV + j] = _mm256_fmadd_ps(w, vv[j], a[r * NV + j]);
    }
  }
  FS_UNROLL for (int r = 0; r < R; ++r) {
    FS_UNROLL for (int j = 0; j < NV; ++j) _mm256_storeu_ps(acc + r * d + c0 + 8 * j, a[r * NV + j]);
  }
  FS_UNROLL for (int r = 0; r < R; ++r) {
    if (n[r] > common) acc_keys<NV>(p + r * kp, common, n[r], v, d, acc + r * d, c0);
  }
}

template <int R>
inline void acc_rows(const float* p, size_t kp, const float* alpha, const uint32_t* n, const float* v, size_t d,
                     float* acc) {
  size_t c = 0;
  for (; c + 32 <= d; c += 32) acc_tile<R, 4>(p, kp, alpha, n, v, d, acc, c);
  for (; c + 8 <= d; c += 8) acc_tile<R, 1>(p, kp, alpha, n, v, d, acc, c);
  for (; c < d; ++c) {  // a head_dim that is not a multiple of 8: the same steps, one lane
    FS_UNROLL for (int r = 0; r < R; ++r) {
      float x = acc[r * d + c];
      if (alpha[r] != 1.0f) x *= alpha[r];
      for (uint32_t i = 0; i < n[r]; ++i) x = std::fma(p[r * kp + i], v[i * d + c], x);
      acc[r * d + c] = x;
    }
  }
}

void accumulate(const float* p, size_t kp, const float* alpha, const uint32_t* n, size_t rows, const float* v,
                size_t d, float* acc) {
  size_t r = 0;
  for (; r + 2 <= rows; r += 2) acc_rows<2>(p + r * kp, kp, alpha + r, n + r, v, d, acc + r * d);
  if (r < rows) acc_rows<1>(p + r * kp, kp, alpha + r, n + r, v, d, acc + r * d);
}

}  // namespace

// attention.cc's loops call these between their own (baseline) float code.
extern const AttnKernels kAvx2Attn{8,
                                   simd::CleanExit<fp8_row>::call,
                                   simd::CleanExit<int4_k_row>::call,
                                   simd::CleanExit<int4_v_row>::call,
                                   simd::CleanExit<transpose>::call,
                                   simd::CleanExit<scores>::call,
                                   simd::CleanExit<softmax>::call,
                                   simd::CleanExit<accumulate>::call};

}  // namespace fineserve::ops
