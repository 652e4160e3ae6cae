// AVX2 micro-kernels of the packed K-quant GEMM (packed_k.h), and the Q8_K activation quantizer
// every level uses. Compiled with -mavx2 -mfma -mf16c, reached only through packed_k_kernels_for().
//
// A YMM register holds 8 of a group's 16 row lanes (a "half"), so a tile is M tokens x H halves.
// Without vpdpbusd a 4-element step is maddubs (u8 codes x s8 activations -> int16 pairs); the
// pairs of several steps are summed in int16 while that cannot overflow (Q4_K: a whole 32-element
// sub-block, 8 x 2 x 15 x 127 = 30,480; Q6_K: two steps, 2 x 2 x 63 x 127 = 32,004), then one madd
// with the sub-block's scale in both int16 of each lane widens them to int32 and applies it. The
// super-block sums are exact integers either way, and the float part is the reference's.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gemm/packed_k.h"
#include "gemm/packed_store.h"
#include "gemm/packed_tiles.h"

namespace fineserve::gemm {

namespace kq = quant::kquant;

namespace {

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// The four 16-element sums of s0..s3 (each 8 int32 lanes holding one group's partial sums).
inline __m128i group_sums4(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

}  // namespace

// quantize_q8_k (kquant_dot.cc) vectorised, bit for bit: the same largest-magnitude value (first
// on ties), the same float product rounded half to even (cvtps with the default rounding mode),
// the same reciprocal; then the 16- and 32-element sums.
void quantize_k_avx2(const float* x, size_t tokens, size_t cols, PackedKActs& a) {
  kq::Q8K& o = a.q8;
  const size_t blocks = cols / kq::kSuper;
  o.tokens = tokens;
  o.blocks = blocks;
  o.q.resize(tokens * blocks * kq::kSuper);
  o.d.resize(tokens * blocks);
  o.bsums.resize(tokens * blocks * 16);
  a.bsums32.resize(tokens * blocks * 8);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), top = _mm256_set1_epi32(127);
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t b = 0; b < blocks; ++b) {
      const float* xb = x + t * cols + b * kq::kSuper;
      const size_t i = t * blocks + b;
      int8_t* q = o.q.data() + i * kq::kSuper;
      int16_t* sums = o.bsums.data() + i * 16;
      __m256 m = _mm256_setzero_ps();
      for (size_t k = 0; k < 32; ++k) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * k)));
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float amax = _mm_cvtss_f32(h);
      if (amax == 0) {
        o.d[i] = 0;
        std::memset(q, 0, kq::kSuper);
        std::memset(sums, 0, 16 * sizeof(int16_t));
        std::memset(a.bsums32.data() + 8 * i, 0, 8 * sizeof(int16_t));
        continue;
      }
      float max = amax;
      const __m256 am = _mm256_set1_ps(amax);
      for (size_t k = 0; k < 32; ++k) {
        const __m256 v = _mm256_loadu_ps(xb + 8 * k);
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, v), am, _CMP_EQ_OQ));
        if (hit != 0) {
          max = xb[8 * k + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(hit)))];
          break;
        }
      }
      const float inv = -127.0f / max;
      const __m256 iv = _mm256_set1_ps(inv);
      __m256i gsum[16];
      for (size_t k = 0; k < 8; ++k) {  // 32 elements: two 16-element groups
        __m256i v[4];
        for (size_t j = 0; j < 4; ++j) {
          v[j] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(iv, _mm256_loadu_ps(xb + 32 * k + 8 * j))), top);
        }
        gsum[2 * k] = _mm256_add_epi32(v[0], v[1]);
        gsum[2 * k + 1] = _mm256_add_epi32(v[2], v[3]);
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * k), _mm256_permutevar8x32_epi32(p, perm));
      }
      __m128i g32[4];
      for (size_t k = 0; k < 4; ++k) g32[k] = group_sums4(gsum[4 * k], gsum[4 * k + 1], gsum[4 * k + 2], gsum[4 * k + 3]);
      const __m128i lo = _mm_packs_epi32(g32[0], g32[1]), hi = _mm_packs_epi32(g32[2], g32[3]);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(sums), lo);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(sums + 8), hi);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.bsums32.data() + 8 * i), _mm_hadd_epi16(lo, hi));
      o.d[i] = 1 / inv;
    }
  }
}

namespace {

constexpr size_t kHalf = kPackRows / 2;

inline __m256i bcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline __m256i load(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// Sub-block j's scale of the half's 8 lanes in both int16 of each lane, from its pair table row
// (lane r's pair at bytes 2r, 2r + 1 of the half's 16 bytes).
template <bool Signed>
inline __m256i lane_scales(const uint8_t* half_pairs, size_t odd) {
  const __m128i dup = odd ? _mm_setr_epi8(1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15)
                          : _mm_setr_epi8(0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14);
  const __m128i s = _mm_shuffle_epi8(load128(half_pairs), dup);
  return Signed ? _mm256_cvtepi8_epi16(s) : _mm256_cvtepu8_epi16(s);
}

// M tokens x H halves from token t0 and half u0 (tiles::block's Tile).
template <bool Q6, size_t M, size_t H>
struct Tile {
  static void run(const PackedWeights& w, const PackedKActs& a, size_t t0, size_t u0, const float* bias, float* y,
                  size_t y_stride);
};

template <bool Q6, size_t M, size_t H>
void Tile<Q6, M, H>::run(const PackedWeights& w, const PackedKActs& a, size_t t0, size_t u0, const float* bias,
                         float* y, size_t y_stride) {
  const kq::Q8K& q8 = a.q8;
  __m256 facc[M][H];
  for (auto& row : facc)
    for (auto& v : row) v = _mm256_setzero_ps();
  const uint8_t* wu[H];
  size_t half[H];
  for (size_t h = 0; h < H; ++h) {
    wu[h] = w.bytes.data() + ((u0 + h) / 2) * w.group_bytes;
    half[h] = (u0 + h) % 2;
  }
  const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (size_t b = 0; b < w.blocks; ++b) {
    const uint8_t* blk[H];
    for (size_t h = 0; h < H; ++h) {
      blk[h] = wu[h] + b * w.block_bytes;
      if (half[h] == 0 || h == 0) prefetch_block(blk[h] + w.block_bytes, w.block_bytes);
    }
    const int8_t* x[M];
    for (size_t m = 0; m < M; ++m) x[m] = q8.q.data() + ((t0 + m) * q8.blocks + b) * kq::kSuper;
    __m256i s[M][H], corr[M][H];
    for (size_t m = 0; m < M; ++m)
      for (size_t h = 0; h < H; ++h) s[m][h] = corr[m][h] = _mm256_setzero_si256();
    // acc (int16 pairs of one or two steps) times sub-block j's scales, into s.
    auto scale_into_s = [&](__m256i (&acc)[M][H], size_t table, size_t j) {
      for (size_t h = 0; h < H; ++h) {
        const uint8_t* p = blk[h] + table + 32 * (j / 2) + 16 * half[h];
        const __m256i sc = Q6 ? lane_scales<true>(p, j % 2) : lane_scales<false>(p, j % 2);
        for (size_t m = 0; m < M; ++m) s[m][h] = _mm256_add_epi32(s[m][h], _mm256_madd_epi16(acc[m][h], sc));
      }
    };
    if constexpr (!Q6) {
      for (size_t j = 0; j < 8; ++j) {
        __m256i acc[M][H];
        for (auto& row : acc)
          for (auto& v : row) v = _mm256_setzero_si256();
        for (size_t i = 0; i < 8; ++i) {
          __m256i codes[H];
          for (size_t h = 0; h < H; ++h) {
            const __m256i v = load(blk[h] + kQ4KCodes + 512 * (j / 2) + 64 * i + 32 * half[h]);
            codes[h] = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(v, 4) : v, low4);
          }
          for (size_t m = 0; m < M; ++m) {
            const __m256i xb = bcast4(x[m] + 32 * j + 4 * i);
            for (size_t h = 0; h < H; ++h) acc[m][h] = _mm256_add_epi16(acc[m][h], _mm256_maddubs_epi16(codes[h], xb));
          }
        }
        scale_into_s(acc, kQ4KScales, j);
      }
      for (size_t k = 0; k < 4; ++k) {
        for (size_t h = 0; h < H; ++h) {
          const __m256i mins = _mm256_cvtepu8_epi16(load128(blk[h] + kQ4KMins + 32 * k + 16 * half[h]));
          for (size_t m = 0; m < M; ++m) {
            const int16_t* bs = a.bsums32.data() + ((t0 + m) * q8.blocks + b) * 8;
            corr[m][h] = _mm256_add_epi32(corr[m][h], _mm256_madd_epi16(mins, bcast4(bs + 2 * k)));
          }
        }
      }
    } else {
      for (size_t hb = 0; hb < 2; ++hb) {
        for (size_t q = 0; q < 4; ++q) {
          for (size_t sub = 0; sub < 2; ++sub) {  // sub-block 8 hb + 2q + sub: steps 4 sub .. + 3
            __m256i acc[M][H];
            for (auto& row : acc)
              for (auto& v : row) v = _mm256_setzero_si256();
            for (size_t i = 4 * sub; i < 4 * sub + 4; ++i) {
              __m256i codes[H];
              for (size_t h = 0; h < H; ++h) {
                const uint8_t* vec = blk[h] + kQ6KCodes + 1536 * hb + 192 * i + 32 * half[h];
                const __m256i lo = load(vec + 64 * (q % 2)), hi = load(vec + 128);
                const __m256i l4 = _mm256_and_si256(q < 2 ? lo : _mm256_srli_epi16(lo, 4), low4);
                const __m256i h2 = q == 0   ? _mm256_slli_epi16(hi, 4)
                                   : q == 1 ? _mm256_slli_epi16(hi, 2)
                                   : q == 2 ? hi
                                            : _mm256_srli_epi16(hi, 2);
                codes[h] = _mm256_or_si256(l4, _mm256_and_si256(h2, bits45));
              }
              for (size_t m = 0; m < M; ++m) {
                const __m256i xb = bcast4(x[m] + 128 * hb + 32 * q + 4 * i);
                for (size_t h = 0; h < H; ++h) acc[m][h] = _mm256_add_epi16(acc[m][h], _mm256_maddubs_epi16(codes[h], xb));
              }
              if (i % 2 == 1) {  // two steps' int16 pairs at most, then widen
                scale_into_s(acc, kQ6KScales, 8 * hb + 2 * q + sub);
                for (auto& row : acc)
                  for (auto& v : row) v = _mm256_setzero_si256();
              }
            }
          }
        }
      }
      for (size_t k = 0; k < 8; ++k) {
        for (size_t h = 0; h < H; ++h) {
          const __m256i sc = _mm256_cvtepi8_epi16(load128(blk[h] + kQ6KScales + 32 * k + 16 * half[h]));
          for (size_t m = 0; m < M; ++m) {
            const int16_t* bs = q8.bsums.data() + ((t0 + m) * q8.blocks + b) * 16;
            corr[m][h] = _mm256_add_epi32(corr[m][h], _mm256_madd_epi16(sc, bcast4(bs + 2 * k)));
          }
        }
      }
    }
    for (size_t h = 0; h < H; ++h) {
      const __m256 dw = _mm256_cvtph_ps(load128(blk[h] + 16 * half[h]));
      for (size_t m = 0; m < M; ++m) {
        const __m256 dx = _mm256_set1_ps(q8.d[(t0 + m) * q8.blocks + b]);
        if constexpr (Q6) {
          const __m256i t = _mm256_sub_epi32(s[m][h], _mm256_slli_epi32(corr[m][h], 5));
          facc[m][h] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(t), facc[m][h]);
        } else {
          const __m256 dmin = _mm256_cvtph_ps(load128(blk[h] + 32 + 16 * half[h]));
          facc[m][h] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(s[m][h]), facc[m][h]);
          facc[m][h] = _mm256_fmadd_ps(_mm256_xor_ps(_mm256_mul_ps(dmin, dx), sign), _mm256_cvtepi32_ps(corr[m][h]),
                                       facc[m][h]);
        }
      }
    }
  }
  tiles::store_halves(facc, w.rows, u0, t0, bias, y, y_stride);
}

// Prefill: 2 tokens x 2 halves (one group); decode: 1 token x 2 halves, one group at a time, so
// the weights are read as one sequential stream (from DRAM: Q4_K 14 -> 33 GB/s, Q6_K 15 -> 22
// against two groups side by side).
template <bool Q6>
void block(const PackedWeights& w, const PackedKActs& a, size_t tokens, size_t r0, size_t r1, const float* bias,
           float* y, size_t ys) {
  tiles::block<Tile, Q6, 2, kHalf, 2, 2>(w, a, tokens, r0, r1, bias, y, ys);
}

}  // namespace

extern const PackedKKernels kAvx2PackedK;
const PackedKKernels kAvx2PackedK = {quantize_k_avx2, block<false>, block<true>};

}  // namespace fineserve::gemm
