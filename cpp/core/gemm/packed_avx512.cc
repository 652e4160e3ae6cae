// AVX-512 VNNI micro-kernels of the packed integer GEMM (packed.h). Compiled with the AVX-512
// flags of its object library plus VNNI (the pragma below, so that no other AVX-512 file can
// pick up VNNI instructions), and reached only through packed_kernels_for() after the host was
// checked for avx512vnni.
//
// A tile is M tokens x N groups of 16 rows: per 4-element step j, N weight vectors are loaded
// once and each feeds M vpdpbusd (one per token, its 4 activation bytes broadcast), into M x N
// int32 accumulators that start at the block's correction; after the block's 8 steps each is
// converted and added into its float accumulator with one FMA by the two scales' product.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx512vnni")
#elif defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gemm/packed.h"
#include "gemm/packed_store.h"
#include "gemm/packed_tiles.h"

namespace fineserve::gemm {

// The AVX2 quantizer (packed_avx2.cc) serves this level too: quantizing is a small part of a call.
void quantize_avx2(const float* x, size_t tokens, size_t cols, PackedActs& out);

namespace {

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <bool Q4, size_t M, size_t N>
void tile(const PackedWeights& w, const PackedActs& a, size_t t0, size_t g0, const float* bias, float* y,
          size_t y_stride) {
  constexpr int32_t c = Q4 ? 8 : 128;
  __m512 facc[M][N];
  for (auto& row : facc)
    for (auto& v : row) v = _mm512_setzero_ps();
  const uint8_t* wg[N];
  for (size_t n = 0; n < N; ++n) wg[n] = w.bytes.data() + (g0 + n) * w.group_bytes;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (size_t b = 0; b < w.blocks; ++b) {
    __m512i iacc[M][N];
    const int8_t* x[M];
    for (size_t m = 0; m < M; ++m) {
      const size_t at = (t0 + m) * a.blocks + b;
      x[m] = a.q.data() + at * 32;
      const __m512i off = _mm512_set1_epi32(-c * a.sum[at]);
      for (size_t n = 0; n < N; ++n) iacc[m][n] = off;
    }
    const size_t base = b * w.block_bytes + kPackScaleBytes;
    for (size_t n = 0; n < N; ++n) prefetch_block(wg[n] + (b + kPrefetchBlocks) * w.block_bytes, w.block_bytes);
    if constexpr (Q4) {
      for (size_t j = 0; j < 4; ++j) {
        __m512i lo[N], hi[N];
        for (size_t n = 0; n < N; ++n) {
          const __m512i v = _mm512_loadu_si512(wg[n] + base + 64 * j);
          lo[n] = _mm512_and_si512(v, low4);
          hi[n] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        }
        for (size_t m = 0; m < M; ++m) {
          const __m512i xl = bcast4(x[m] + 4 * j), xh = bcast4(x[m] + 16 + 4 * j);
          for (size_t n = 0; n < N; ++n) {
            iacc[m][n] = _mm512_dpbusd_epi32(iacc[m][n], lo[n], xl);
            iacc[m][n] = _mm512_dpbusd_epi32(iacc[m][n], hi[n], xh);
          }
        }
      }
    } else {
      for (size_t j = 0; j < 8; ++j) {
        __m512i v[N];
        for (size_t n = 0; n < N; ++n) v[n] = _mm512_loadu_si512(wg[n] + base + 64 * j);
        for (size_t m = 0; m < M; ++m) {
          const __m512i xb = bcast4(x[m] + 4 * j);
          for (size_t n = 0; n < N; ++n) iacc[m][n] = _mm512_dpbusd_epi32(iacc[m][n], v[n], xb);
        }
      }
    }
    for (size_t n = 0; n < N; ++n) {
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg[n] + b * w.block_bytes)));
      for (size_t m = 0; m < M; ++m) {
        const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(a.d[(t0 + m) * a.blocks + b]));
        facc[m][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[m][n]), scale, facc[m][n]);
      }
    }
  }
  tiles::store_groups(facc, w.rows, g0, t0, bias, y, y_stride);
}

template <bool Q4, size_t M, size_t N>
struct Tile {
  static void run(const PackedWeights& w, const PackedActs& a, size_t t0, size_t g0, const float* bias, float* y,
                  size_t ys) {
    tile<Q4, M, N>(w, a, t0, g0, bias, y, ys);
  }
};

// Prefill: 4 tokens x 2 groups (8 int32 + 8 float accumulators, 2 weight and 2 activation
// vectors). Decode: 1 token x 1 group, so the weights are read as one sequential stream (from
// DRAM, 4 groups side by side ran at 34 GB/s for Q8_0 and 27 for Q4_0; one at 44 and 35).
template <bool Q4>
void block(const PackedWeights& w, const PackedActs& a, size_t tokens, size_t r0, size_t r1, const float* bias,
           float* y, size_t ys) {
  tiles::block<Tile, Q4, 4, kPackRows, 2, 1>(w, a, tokens, r0, r1, bias, y, ys);
}

}  // namespace

extern const PackedKernels kAvx512Packed;
const PackedKernels kAvx512Packed = {quantize_avx2, block<false>, block<true>};

}  // namespace fineserve::gemm

#if defined(__clang__)
#pragma clang attribute pop
#endif
