// AVX2 micro-kernels of the packed integer GEMM (packed.h), and the activation quantizer every
// level uses. Compiled with -mavx2 -mfma -mf16c, reached only through packed_kernels_for().
//
// A YMM register holds 8 of a group's 16 row lanes (a "half"), so a tile is M tokens x H halves.
// Without vpdpbusd the 4-element steps are maddubs (u8 x s8 -> int16 pairs) and madd (-> int32):
// Q4_0's nibbles (0..15) against x fit int16 for a whole block (8 steps x 2 x 15 x 127 = 30480),
// so they are widened once per block; Q8_0's bytes are turned back into signed weights, and the
// sign moved onto x (llama.cpp's recipe), which needs no correction. The integer block sums are
// exact either way, and the float part is the reference's cvt, mul, fma per lane.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gemm/packed.h"
#include "gemm/packed_store.h"
#include "gemm/packed_tiles.h"

namespace fineserve::gemm {

void quantize_avx2(const float* x, size_t tokens, size_t cols, PackedActs& a) {
  a.resize(tokens, cols / 32);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t b = 0; b < a.blocks; ++b) {
      const float* xb = x + t * cols + 32 * b;
      __m256 v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(xb + 8 * i);
      __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                               _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float amax = _mm_cvtss_f32(h);
      const size_t at = t * a.blocks + b;
      a.d[at] = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
      const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
      __m256i q[4];
      for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));  // round half even
      __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
      a.sum[at] = _mm_cvtsi128_si32(s4);
      const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.q.data() + at * 32), _mm256_permutevar8x32_epi32(packed, perm));
    }
  }
}

namespace {

constexpr size_t kHalf = kPackRows / 2;

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <bool Q4, size_t M, size_t H>
void tile(const PackedWeights& w, const PackedActs& a, size_t t0, size_t u0, const float* bias, float* y,
          size_t y_stride) {
  __m256 facc[M][H];
  for (auto& row : facc)
    for (auto& v : row) v = _mm256_setzero_ps();
  const uint8_t* wu[H];  // the half's group in block 0: its 8 scales at + 16 * half, its quant lanes at + 32 * half
  size_t half[H];
  for (size_t h = 0; h < H; ++h) {
    wu[h] = w.bytes.data() + ((u0 + h) / 2) * w.group_bytes;
    half[h] = (u0 + h) % 2;
  }
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(char(0x80));
  for (size_t b = 0; b < w.blocks; ++b) {
    const int8_t* x[M];
    for (size_t m = 0; m < M; ++m) x[m] = a.q.data() + ((t0 + m) * a.blocks + b) * 32;
    __m256i iacc[M][H];
    const size_t base = b * w.block_bytes + kPackScaleBytes;
    for (size_t h = 0; h < H; ++h) {
      if (half[h] == 0 || h == 0) prefetch_block(wu[h] + (b + kPrefetchBlocks) * w.block_bytes, w.block_bytes);
    }
    if constexpr (Q4) {
      __m256i s16[M][H];
      for (auto& row : s16)
        for (auto& v : row) v = _mm256_setzero_si256();
      for (size_t j = 0; j < 4; ++j) {
        for (size_t h = 0; h < H; ++h) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wu[h] + base + 64 * j + 32 * half[h]));
          const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
          for (size_t m = 0; m < M; ++m) {
            const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(x[m] + 4 * j)),
                                               _mm256_maddubs_epi16(hi, bcast4(x[m] + 16 + 4 * j)));
            s16[m][h] = _mm256_add_epi16(s16[m][h], p);
          }
        }
      }
      for (size_t m = 0; m < M; ++m) {
        const __m256i off = _mm256_set1_epi32(-8 * a.sum[(t0 + m) * a.blocks + b]);
        for (size_t h = 0; h < H; ++h) iacc[m][h] = _mm256_add_epi32(_mm256_madd_epi16(s16[m][h], ones), off);
      }
    } else {
      for (auto& row : iacc)
        for (auto& v : row) v = _mm256_setzero_si256();
      for (size_t j = 0; j < 8; ++j) {
        for (size_t h = 0; h < H; ++h) {
          const __m256i ws = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wu[h] + base + 64 * j + 32 * half[h])), flip);
          const __m256i aw = _mm256_sign_epi8(ws, ws);  // |w| (|-128| = 128 as unsigned)
          for (size_t m = 0; m < M; ++m) {
            const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(x[m] + 4 * j), ws));
            iacc[m][h] = _mm256_add_epi32(iacc[m][h], _mm256_madd_epi16(p, ones));
          }
        }
      }
    }
    for (size_t h = 0; h < H; ++h) {
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wu[h] + b * w.block_bytes + 16 * half[h])));
      for (size_t m = 0; m < M; ++m) {
        const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(a.d[(t0 + m) * a.blocks + b]));
        facc[m][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[m][h]), scale, facc[m][h]);
      }
    }
  }
  tiles::store_halves(facc, w.rows, u0, t0, bias, y, y_stride);
}

template <bool Q4, size_t M, size_t H>
struct Tile {
  static void run(const PackedWeights& w, const PackedActs& a, size_t t0, size_t u0, const float* bias, float* y,
                  size_t ys) {
    tile<Q4, M, H>(w, a, t0, u0, bias, y, ys);
  }
};

// Prefill: 2 tokens x 2 halves (one group); decode: 1 token x 2 halves, one group at a time, so
// the weights are read as one sequential stream (from DRAM: Q8_0 26 -> 35 GB/s, Q4_0 26 -> 32
// against two groups side by side).
template <bool Q4>
void block(const PackedWeights& w, const PackedActs& a, size_t tokens, size_t r0, size_t r1, const float* bias,
           float* y, size_t ys) {
  tiles::block<Tile, Q4, 2, kHalf, 2, 2>(w, a, tokens, r0, r1, bias, y, ys);
}

}  // namespace

extern const PackedKernels kAvx2Packed;
const PackedKernels kAvx2Packed = {quantize_avx2, block<false>, block<true>};

}  // namespace fineserve::gemm
