// AVX-512 VNNI micro-kernels of the packed K-quant GEMM (packed_k.h), compiled and reached like
// packed_avx512.cc (VNNI by the pragma below, after the host was checked for avx512vnni).
//
// A tile is M tokens x N groups of 16 rows. Per sub-block, N code vectors per 4-element step feed
// M vpdpbusd each (the token's 4 activation bytes broadcast) into M x N int32 sums started at 0;
// the sub-block's sums are then multiplied by its 16 scales (vpmulld) into the super-block's S.
// The mins (Q4_K) and the 32-offset (Q6_K) are one vpdpwssd per pair of sub-blocks against the
// activation block sums; then the same float FMAs as kquant_dot.h, lane by lane.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx512vnni")
#elif defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gemm/packed_k.h"
#include "gemm/packed_store.h"
#include "gemm/packed_tiles.h"

namespace fineserve::gemm {

// The AVX2 quantizer (packed_k_avx2.cc) serves this level too.
void quantize_k_avx2(const float* x, size_t tokens, size_t cols, PackedKActs& out);

namespace {

namespace kq = quant::kquant;

inline __m512i bcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512(p); }
inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Lane r's value of sub-block j from a pair table row (pairs widened to int16: j even is the low half).
template <bool Signed>
inline __m512i pair_table(const uint8_t* p) {
  return Signed ? _mm512_cvtepi8_epi16(load256(p)) : _mm512_cvtepu8_epi16(load256(p));
}
inline __m512i pick(__m512i pairs, size_t odd) {
  return odd ? _mm512_srai_epi32(pairs, 16) : _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16);
}

// Code vector q (0..3) of a Q6_K step from its ql_a, ql_b and qh vectors (layout in packed_k.h).
inline __m512i q6_code(__m512i qa, __m512i qb, __m512i qh, size_t q) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  const __m512i l4 = _mm512_and_si512(q < 2 ? (q == 0 ? qa : qb) : _mm512_srli_epi16(q == 2 ? qa : qb, 4), low4);
  const __m512i h2 = q == 0 ? _mm512_slli_epi16(qh, 4) : q == 1 ? _mm512_slli_epi16(qh, 2) : q == 2 ? qh : _mm512_srli_epi16(qh, 2);
  return _mm512_or_si512(l4, _mm512_and_si512(h2, bits45));
}

template <size_t M, size_t N>
struct Sums {
  __m512i v[M][N];
  void zero() {
    for (auto& row : v)
      for (auto& x : row) x = _mm512_setzero_si512();
  }
};

// One 4-element step: acc[m][n] += codes[n] . x[m][off..off+3].
template <size_t M, size_t N>
inline void step(Sums<M, N>& acc, const __m512i (&codes)[N], const int8_t* const (&x)[M], size_t off) {
  for (size_t m = 0; m < M; ++m) {
    const __m512i xb = bcast4(x[m] + off);
    for (size_t n = 0; n < N; ++n) acc.v[m][n] = _mm512_dpbusd_epi32(acc.v[m][n], codes[n], xb);
  }
}

// M tokens x N groups from token t0 and group g0 (tiles::block's Tile).
template <bool Q6, size_t M, size_t N>
struct Tile {
  static void run(const PackedWeights& w, const PackedKActs& a, size_t t0, size_t g0, const float* bias, float* y,
                  size_t y_stride);
};

template <bool Q6, size_t M, size_t N>
void Tile<Q6, M, N>::run(const PackedWeights& w, const PackedKActs& a, size_t t0, size_t g0, const float* bias,
                         float* y, size_t y_stride) {
  const kq::Q8K& q8 = a.q8;
  __m512 facc[M][N];
  for (auto& row : facc)
    for (auto& v : row) v = _mm512_setzero_ps();
  const uint8_t* wg[N];
  for (size_t n = 0; n < N; ++n) wg[n] = w.bytes.data() + (g0 + n) * w.group_bytes;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (size_t b = 0; b < w.blocks; ++b) {
    const uint8_t* blk[N];
    for (size_t n = 0; n < N; ++n) {
      blk[n] = wg[n] + b * w.block_bytes;
      prefetch_block(blk[n] + w.block_bytes, w.block_bytes);
    }
    const int8_t* x[M];
    for (size_t m = 0; m < M; ++m) x[m] = q8.q.data() + ((t0 + m) * q8.blocks + b) * kq::kSuper;
    Sums<M, N> s, acc;
    s.zero();
    // s += sub-block j's sums times its scales.
    auto scale_into_s = [&](const Sums<M, N>& sums, size_t table, size_t j, bool is_signed) {
      for (size_t n = 0; n < N; ++n) {
        const __m512i pairs = is_signed ? pair_table<true>(blk[n] + table + 32 * (j / 2))
                                        : pair_table<false>(blk[n] + table + 32 * (j / 2));
        const __m512i sc = pick(pairs, j % 2);
        for (size_t m = 0; m < M; ++m) s.v[m][n] = _mm512_add_epi32(s.v[m][n], _mm512_mullo_epi32(sums.v[m][n], sc));
      }
    };
    // The per-lane correction of the super-block (Q4_K: M = sum m_j bs32_j; Q6_K: sum sc_j bs_j).
    Sums<M, N> corr;
    corr.zero();
    if constexpr (!Q6 && M == 1) {
      // Decode: each code vector is loaded once for both of its sub-blocks (low and high nibbles).
      for (size_t c = 0; c < 4; ++c) {
        Sums<M, N> hi;
        acc.zero();
        hi.zero();
        for (size_t i = 0; i < 8; ++i) {
          __m512i lo4[N], hi4[N];
          for (size_t n = 0; n < N; ++n) {
            const __m512i v = load(blk[n] + kQ4KCodes + 512 * c + 64 * i);
            lo4[n] = _mm512_and_si512(v, low4);
            hi4[n] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
          }
          step(acc, lo4, x, 64 * c + 4 * i);
          step(hi, hi4, x, 64 * c + 32 + 4 * i);
        }
        scale_into_s(acc, kQ4KScales, 2 * c, false);
        scale_into_s(hi, kQ4KScales, 2 * c + 1, false);
      }
    } else if constexpr (!Q6) {
      for (size_t j = 0; j < 8; ++j) {
        acc.zero();
        for (size_t i = 0; i < 8; ++i) {
          __m512i codes[N];
          for (size_t n = 0; n < N; ++n) {
            const __m512i v = load(blk[n] + kQ4KCodes + 512 * (j / 2) + 64 * i);
            codes[n] = _mm512_and_si512(j % 2 ? _mm512_srli_epi16(v, 4) : v, low4);
          }
          step(acc, codes, x, 32 * j + 4 * i);
        }
        scale_into_s(acc, kQ4KScales, j, false);
      }
    }
    if constexpr (!Q6) {
      for (size_t k = 0; k < 4; ++k) {
        for (size_t n = 0; n < N; ++n) {
          const __m512i mins = pair_table<false>(blk[n] + kQ4KMins + 32 * k);
          for (size_t m = 0; m < M; ++m) {
            const int16_t* bs = a.bsums32.data() + ((t0 + m) * q8.blocks + b) * 8;
            corr.v[m][n] = _mm512_dpwssd_epi32(corr.v[m][n], mins, bcast4(bs + 2 * k));
          }
        }
      }
    } else if constexpr (M == 1) {
      // Decode: the three vectors of a step are loaded once for their four code vectors.
      for (size_t h = 0; h < 2; ++h) {
        for (size_t half = 0; half < 2; ++half) {  // sub-blocks 8h + 2q + half, q = 0..3
          Sums<M, N> sq[4];
          for (Sums<M, N>& v : sq) v.zero();
          for (size_t i = 4 * half; i < 4 * half + 4; ++i) {
            __m512i codes[4][N];
            for (size_t n = 0; n < N; ++n) {
              const uint8_t* vec = blk[n] + kQ6KCodes + 1536 * h + 192 * i;
              const __m512i qa = load(vec), qb = load(vec + 64), qh = load(vec + 128);
              for (size_t q = 0; q < 4; ++q) codes[q][n] = q6_code(qa, qb, qh, q);
            }
            for (size_t q = 0; q < 4; ++q) step(sq[q], codes[q], x, 128 * h + 32 * q + 4 * i);
          }
          for (size_t q = 0; q < 4; ++q) scale_into_s(sq[q], kQ6KScales, 8 * h + 2 * q + half, true);
        }
      }
    } else {
      // Prefill: one sub-block at a time, so that M x N sums fit beside the tile's other registers.
      for (size_t h = 0; h < 2; ++h) {
        for (size_t q = 0; q < 4; ++q) {
          for (size_t half = 0; half < 2; ++half) {  // sub-block 8h + 2q + half: steps 4 half .. + 3
            acc.zero();
            for (size_t i = 4 * half; i < 4 * half + 4; ++i) {
              __m512i codes[N];
              for (size_t n = 0; n < N; ++n) {
                const uint8_t* vec = blk[n] + kQ6KCodes + 1536 * h + 192 * i;
                codes[n] = q6_code(load(vec), load(vec + 64), load(vec + 128), q);
              }
              step(acc, codes, x, 128 * h + 32 * q + 4 * i);
            }
            scale_into_s(acc, kQ6KScales, 8 * h + 2 * q + half, true);
          }
        }
      }
    }
    if constexpr (Q6) {
      for (size_t k = 0; k < 8; ++k) {
        for (size_t n = 0; n < N; ++n) {
          const __m512i sc = pair_table<true>(blk[n] + kQ6KScales + 32 * k);
          for (size_t m = 0; m < M; ++m) {
            const int16_t* bs = q8.bsums.data() + ((t0 + m) * q8.blocks + b) * 16;
            corr.v[m][n] = _mm512_dpwssd_epi32(corr.v[m][n], sc, bcast4(bs + 2 * k));
          }
        }
      }
    }
    for (size_t n = 0; n < N; ++n) {
      const __m512 dw = _mm512_cvtph_ps(load256(blk[n]));
      for (size_t m = 0; m < M; ++m) {
        const __m512 dx = _mm512_set1_ps(q8.d[(t0 + m) * q8.blocks + b]);
        if constexpr (Q6) {
          const __m512i t = _mm512_sub_epi32(s.v[m][n], _mm512_slli_epi32(corr.v[m][n], 5));
          facc[m][n] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(t), facc[m][n]);
        } else {
          const __m512 dmin = _mm512_cvtph_ps(load256(blk[n] + 32));
          facc[m][n] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(s.v[m][n]), facc[m][n]);
          facc[m][n] = _mm512_fmadd_ps(_mm512_xor_ps(_mm512_mul_ps(dmin, dx), sign), _mm512_cvtepi32_ps(corr.v[m][n]),
                                       facc[m][n]);
        }
      }
    }
  }
  tiles::store_groups(facc, w.rows, g0, t0, bias, y, y_stride);
}

// Prefill: 4 tokens x 2 groups (8 sub-block, 8 super-block and 8 float accumulators). Decode:
// 1 token x 1 group, so the weights are read as one sequential stream: from DRAM, 4 groups side by
// side (4 streams) ran at 20-26 GB/s, one at 35-42 (96,000 x 768 Q4_K / 64,000 x 768 Q6_K).
template <bool Q6>
void block(const PackedWeights& w, const PackedKActs& a, size_t tokens, size_t r0, size_t r1, const float* bias,
           float* y, size_t ys) {
  tiles::block<Tile, Q6, 4, kPackRows, 2, 1>(w, a, tokens, r0, r1, bias, y, ys);
}

}  // namespace

extern const PackedKKernels kAvx512PackedK;
const PackedKKernels kAvx512PackedK = {quantize_k_avx2, block<false>, block<true>};

}  // namespace fineserve::gemm

#if defined(__clang__)
#pragma clang attribute pop
#endif
