// AVX2 micro-kernels of the W8A8 integer GEMM (packed_w8a8.h), and the activation quantizer every
// level uses. Compiled with -mavx2 -mfma -mf16c, reached only through w8a8_kernels_for().
//
// A YMM register holds 8 of a group's 16 row lanes (a "half"), so a tile is M tokens x H halves.
// Without vpdpbusd a 4-column step is maddubs + madd: the weights are turned back into signed q
// and their sign moved onto x (llama.cpp's recipe), so |q| <= 127 times x in -127..127 stays
// inside maddubs' int16 pairs (2 * 127 * 127 = 32258) and needs no correction; the int32 sums
// are those of the reference, exactly.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gemm/packed_w8a8.h"
#include "gemm/packed_w8a8_tiles.h"

namespace fineserve::gemm {

// The reference's arithmetic in vectors: x * input_scale (one rounding, as there), the max of |x|,
// sx = amax / 127 in scalar, then q = round-half-even(x / sx) by cvtps (MXCSR's default rounding,
// which nearbyint also follows) and a true division, not a multiply by 127 / amax.
void w8a8_quantize_avx2(const float* x, size_t tokens, size_t cols, const float* input_scale, W8A8Acts& a) {
  a.resize(tokens, cols);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  alignas(32) static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  // Eight floats of row t at column c (zeros past the end), scaled.
  auto load = [&](const float* xt, size_t c) {
    if (c + 8 <= cols) {
      const __m256 v = _mm256_loadu_ps(xt + c);
      return input_scale ? _mm256_mul_ps(v, _mm256_loadu_ps(input_scale + c)) : v;
    }
    const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 - (cols - c)));
    const __m256 v = _mm256_maskload_ps(xt + c, m);
    return input_scale ? _mm256_mul_ps(v, _mm256_maskload_ps(input_scale + c, m)) : v;
  };
  for (size_t t = 0; t < tokens; ++t) {
    const float* xt = x + t * cols;
    __m256 mx = _mm256_setzero_ps();
    for (size_t c = 0; c < cols; c += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, load(xt, c)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float sx = _mm_cvtss_f32(h) / 127.0f;
    a.scale[t] = sx;
    if (sx == 0.0f) {  // q stays zero (resize cleared it)
      a.sum[t] = 0;
      continue;
    }
    const __m256 vs = _mm256_set1_ps(sx);
    __m256i s = _mm256_setzero_si256();
    int8_t* q = a.q.data() + t * a.stride;
    for (size_t c = 0; c < cols; c += 32) {
      __m256i qi[4];
      for (size_t i = 0; i < 4; ++i) {
        qi[i] = c + 8 * i < cols ? _mm256_cvtps_epi32(_mm256_div_ps(load(xt, c + 8 * i), vs)) : _mm256_setzero_si256();
        s = _mm256_add_epi32(s, qi[i]);
      }
      const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + c), _mm256_permutevar8x32_epi32(packed, perm));
    }
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    a.sum[t] = _mm_cvtsi128_si32(s4);
  }
}

namespace {

using w8a8_tiles::Args;
constexpr size_t kHalf = kPackRows / 2;

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <size_t M, size_t H>
void tile(const Args& g, size_t t0, size_t u0) {
  const PackedWeights& w = g.w;
  const W8A8Acts& a = g.a;
  __m256i acc[M][H];
  for (auto& row : acc)
    for (auto& v : row) v = _mm256_setzero_si256();
  const int8_t* x[M];
  for (size_t m = 0; m < M; ++m) x[m] = a.q.data() + (t0 + m) * a.stride;
  const uint8_t* wu[H];  // the half's lanes in block 0 of its group
  for (size_t h = 0; h < H; ++h) wu[h] = w.bytes.data() + (u0 + h) / 2 * w.group_bytes + 32 * ((u0 + h) % 2);
  const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(char(0x80));
  for (size_t b = 0; b < w.blocks; ++b) {
    const size_t base = b * kW8A8BlockBytes;
    for (size_t h = 0; h < H; ++h) {
      if ((u0 + h) % 2 == 0 || h == 0) prefetch_block(wu[h] - 32 * ((u0 + h) % 2) + base + kPrefetchBlocks * kW8A8BlockBytes, kW8A8BlockBytes);
    }
    // Unrolled in full, so that acc lives in registers.
#pragma GCC unroll 8
    for (size_t j = 0; j < 8; ++j) {
#pragma GCC unroll 8
      for (size_t h = 0; h < H; ++h) {
        const __m256i ws = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wu[h] + base + 64 * j)), flip);
        const __m256i aw = _mm256_sign_epi8(ws, ws);
#pragma GCC unroll 8
        for (size_t m = 0; m < M; ++m) {
          const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(x[m] + 32 * b + 4 * j), ws));
          acc[m][h] = _mm256_add_epi32(acc[m][h], _mm256_madd_epi16(p, ones));
        }
      }
    }
  }
  const float* sw = w8a8_row_scales(w);
  for (size_t h = 0; h < H; ++h) {
    const size_t r = (u0 + h) * kHalf;
    if (r >= w.rows) break;
    const size_t valid = std::min(kHalf, w.rows - r);
    const __m256 swv = _mm256_loadu_ps(sw + r);
    for (size_t m = 0; m < M; ++m) {
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[m][h]), _mm256_mul_ps(swv, _mm256_set1_ps(a.scale[t0 + m])));
      asm("" : "+x"(v));  // rounded before the bias is added (no FMA contraction), as in the reference
      alignas(32) float out[kHalf];
      if (g.bias != nullptr) {
        alignas(32) float bv[kHalf] = {};
        std::memcpy(bv, g.bias + r, 4 * valid);
        v = _mm256_add_ps(v, _mm256_load_ps(bv));
      }
      _mm256_store_ps(out, v);
      std::memcpy(g.y + (t0 + m) * g.y_stride + r, out, 4 * valid);
    }
  }
}

template <size_t M, size_t H>
struct Tile {
  static void run(const Args& g, size_t t0, size_t u0) { tile<M, H>(g, t0, u0); }
};

// Prefill: 4 tokens x 2 halves (8 accumulators, 4 weight registers); decode: 1 token x 4 halves.
void gemm(const PackedWeights& w, const W8A8Acts& a, size_t tokens, size_t r0, size_t r1, const float* bias, float* y,
          size_t ys) {
  w8a8_tiles::block<Tile, 4, kHalf, 2, 4>(w, a, tokens, r0, r1, bias, y, ys);
}

}  // namespace

extern const W8A8Kernels kAvx2W8A8;
const W8A8Kernels kAvx2W8A8 = {w8a8_quantize_avx2, gemm, 4 * kHalf};

}  // namespace fineserve::gemm
