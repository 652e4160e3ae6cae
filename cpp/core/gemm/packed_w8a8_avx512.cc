// AVX-512 VNNI micro-kernels of the W8A8 integer GEMM (packed_w8a8.h). Compiled with the AVX-512
// flags of its object library plus VNNI (the pragma below, as packed_avx512.cc does), reached
// only through w8a8_kernels_for() after the host was checked for avx512vnni.
//
// A tile is M tokens x N groups of 16 rows: per 4-column step, N weight vectors are loaded once and
// each feeds M vpdpbusd (one per token, its 4 activation bytes broadcast). Unlike Q8_0 there is no
// per-block float step: each output is one int32 lane for the whole row, so a tile needs only
// M x N accumulators (6 x 4 = 24 of the 32 registers for prefill; decode runs 1 x 8, eight
// independent weight streams).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx512vnni")
#elif defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gemm/packed_w8a8.h"
#include "gemm/packed_w8a8_tiles.h"

namespace fineserve::gemm {

// The AVX2 quantizer (packed_w8a8_avx2.cc) serves this level too.
void w8a8_quantize_avx2(const float* x, size_t tokens, size_t cols, const float* input_scale, W8A8Acts& a);

namespace {

using w8a8_tiles::Args;

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <size_t M, size_t N>
void tile(const Args& g, size_t t0, size_t g0) {
  const PackedWeights& w = g.w;
  const W8A8Acts& a = g.a;
  __m512i acc[M][N];
  const int8_t* x[M];
  for (size_t m = 0; m < M; ++m) {
    x[m] = a.q.data() + (t0 + m) * a.stride;
    for (size_t n = 0; n < N; ++n) acc[m][n] = _mm512_set1_epi32(-128 * a.sum[t0 + m]);
  }
  const uint8_t* wg[N];
  for (size_t n = 0; n < N; ++n) wg[n] = w.bytes.data() + (g0 + n) * w.group_bytes;
  for (size_t b = 0; b < w.blocks; ++b) {
    const size_t base = b * kW8A8BlockBytes;
    for (size_t n = 0; n < N; ++n) prefetch_block(wg[n] + base + kPrefetchBlocks * kW8A8BlockBytes, kW8A8BlockBytes);
    // Unrolled in full, so that acc lives in registers (GCC kept it on the stack otherwise).
#pragma GCC unroll 8
    for (size_t j = 0; j < 8; ++j) {
      __m512i v[N];
#pragma GCC unroll 8
      for (size_t n = 0; n < N; ++n) v[n] = _mm512_loadu_si512(wg[n] + base + 64 * j);
#pragma GCC unroll 8
      for (size_t m = 0; m < M; ++m) {
        const __m512i xb = bcast4(x[m] + 32 * b + 4 * j);
#pragma GCC unroll 8
        for (size_t n = 0; n < N; ++n) acc[m][n] = _mm512_dpbusd_epi32(acc[m][n], v[n], xb);
      }
    }
  }
  const float* sw = w8a8_row_scales(w);
  for (size_t n = 0; n < N; ++n) {
    const size_t r = (g0 + n) * kPackRows;
    const size_t valid = std::min(kPackRows, w.rows - r);
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    const __m512 swv = _mm512_loadu_ps(sw + r);
    for (size_t m = 0; m < M; ++m) {
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[m][n]), _mm512_mul_ps(swv, _mm512_set1_ps(a.scale[t0 + m])));
      // The product is rounded before the bias is added (no FMA contraction), as in the reference.
      asm("" : "+v"(v));
      if (g.bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, g.bias + r));
      _mm512_mask_storeu_ps(g.y + (t0 + m) * g.y_stride + r, mask, v);
    }
  }
}

template <size_t M, size_t N>
struct Tile {
  static void run(const Args& g, size_t t0, size_t g0) { tile<M, N>(g, t0, g0); }
};

void gemm(const PackedWeights& w, const W8A8Acts& a, size_t tokens, size_t r0, size_t r1, const float* bias, float* y,
          size_t ys) {
  w8a8_tiles::block<Tile, 6, kPackRows, 4, 8>(w, a, tokens, r0, r1, bias, y, ys);
}

}  // namespace

extern const W8A8Kernels kAvx512W8A8;
const W8A8Kernels kAvx512W8A8 = {w8a8_quantize_avx2, gemm, 8 * kPackRows};

}  // namespace fineserve::gemm

#if defined(__clang__)
#pragma clang attribute pop
#endif
