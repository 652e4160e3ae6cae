// The last step of every packed micro-kernel (packed_avx2.cc, packed_avx512.cc, packed_k_*.cc):
// a tile's float accumulators plus the bias, stored into the rows of y that exist. Included only
// by the kernel files; each part is compiled where its instruction set is on.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "gemm/packed.h"

namespace fineserve::gemm::tiles {

#if defined(__AVX512F__)
// M tokens x N groups of kPackRows rows from group g0 (of a matrix of `rows` rows).
template <size_t M, size_t N>
inline void store_groups(const __m512 (&acc)[M][N], size_t rows, size_t g0, size_t t0, const float* bias, float* y,
                         size_t y_stride) {
  for (size_t n = 0; n < N; ++n) {
    const size_t r = (g0 + n) * kPackRows;
    if (r >= rows) break;
    const size_t valid = std::min(kPackRows, rows - r);
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    const __m512 bv = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias + r) : _mm512_setzero_ps();
    for (size_t m = 0; m < M; ++m) {
      const __m512 v = bias != nullptr ? _mm512_add_ps(acc[m][n], bv) : acc[m][n];
      _mm512_mask_storeu_ps(y + (t0 + m) * y_stride + r, mask, v);
    }
  }
}
#endif

#if defined(__AVX2__)
// M tokens x H halves of a group (8 rows each) from half u0.
template <size_t M, size_t H>
inline void store_halves(const __m256 (&acc)[M][H], size_t rows, size_t u0, size_t t0, const float* bias, float* y,
                         size_t y_stride) {
  constexpr size_t kHalf = kPackRows / 2;
  for (size_t h = 0; h < H; ++h) {
    const size_t r = (u0 + h) * kHalf;
    if (r >= rows) break;
    const size_t valid = std::min(kHalf, rows - r);
    for (size_t m = 0; m < M; ++m) {
      alignas(32) float out[kHalf];
      __m256 v = acc[m][h];
      if (bias != nullptr) {
        alignas(32) float bv[kHalf] = {};
        std::memcpy(bv, bias + r, 4 * valid);
        v = _mm256_add_ps(v, _mm256_load_ps(bv));
      }
      _mm256_store_ps(out, v);
      std::memcpy(y + (t0 + m) * y_stride + r, out, 4 * valid);
    }
  }
}
#endif

}  // namespace fineserve::gemm::tiles
