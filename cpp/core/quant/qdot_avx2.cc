// AVX2 (+FMA, F16C) quantized row dots. Integer formats use llama.cpp's x86 recipe: maddubs of
// an unsigned and a signed byte vector into int16 pairs, madd with ones into int32, one float FMA
// per 32-block. What depends only on the weights (|w|, unpacked nibbles, decoded scales) is done
// once per block and reused for every token of the tile.
#include <immintrin.h>

#include <cstring>

#include "quant/qdot.h"
#include "quant/row_kernels.h"
#include "quant/weight_format.h"

namespace fineserve::quant {
namespace {

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
float f32_at(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

__m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of a 32-element sub-block -> 32 bytes 0..15 in element order (low nibbles first).
__m256i nibbles32(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

// Two accumulators per token keep two FMA chains in flight. The same two for every tile width, so
// a token's sum does not depend on how many tokens share the call (batch invariance).
template <size_t NT>
constexpr size_t kChains = 2;

template <size_t NT>
void q8_0_tile(const uint8_t* row, const Activations& a, size_t t0, float* out) {
  constexpr size_t C = kChains<NT>;
  const size_t nb = a.cols / 32, xb = a.stride / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NT][C];
  for (auto& t : acc)
    for (auto& c : t) c = _mm256_setzero_ps();
  for (size_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + 34 * b;
    const __m256i w = load256(blk + 2);
    const __m256i aw = _mm256_sign_epi8(w, w);  // |w| as unsigned (|-128| = 128 fits)
    const float dw = f16_at(blk);
    for (size_t k = 0; k < NT; ++k) {
      const size_t t = t0 + k;
      const __m256i sx = _mm256_sign_epi8(load256(a.q.data() + t * a.stride + 32 * b), w);
      const __m256i sum = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
      acc[k][b % C] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(dw * a.block_scale[t * xb + b]),
                                      acc[k][b % C]);
    }
  }
  for (size_t k = 0; k < NT; ++k) {
    __m256 s = acc[k][0];
    for (size_t c = 1; c < C; ++c) s = _mm256_add_ps(s, acc[k][c]);
    out[k] = hsum(s);
  }
}

// Nibbles are unsigned 0..15, so maddubs takes them as they are; the "- 8" is 8 * the pair sums of
// x, prepared once per call (Activations::q4_offset) and subtracted in the same int16 lanes.
template <size_t NT>
void q4_0_tile(const uint8_t* row, const Activations& a, size_t t0, float* out) {
  constexpr size_t C = kChains<NT>;
  const size_t nb = a.cols / 32, xb = a.stride / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NT][C];
  for (auto& t : acc)
    for (auto& c : t) c = _mm256_setzero_ps();
  for (size_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + 18 * b;
    const __m256i w = nibbles32(blk + 2);
    const float dw = f16_at(blk);
    for (size_t k = 0; k < NT; ++k) {
      const size_t t = t0 + k;
      __m256i p = _mm256_maddubs_epi16(w, load256(a.q.data() + t * a.stride + 32 * b));
      p = _mm256_sub_epi16(p, load256(a.q4_offset.data() + (t * xb + b) * 16));
      const __m256i sum = _mm256_madd_epi16(p, ones);
      acc[k][b % C] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(dw * a.block_scale[t * xb + b]),
                                      acc[k][b % C]);
    }
  }
  for (size_t k = 0; k < NT; ++k) {
    __m256 s = acc[k][0];
    for (size_t c = 1; c < C; ++c) s = _mm256_add_ps(s, acc[k][c]);
    out[k] = hsum(s);
  }
}

// One int32 sum per token over the whole row (|sum| <= cols * 127^2 fits up to 133k columns).
template <size_t NT>
void w8a8_tile(const uint8_t* row, const Activations& a, size_t t0, float* out) {
  const int8_t* w8 = reinterpret_cast<const int8_t*>(row + kRowAlign);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[NT];
  for (auto& v : acc) v = _mm256_setzero_si256();
  alignas(32) int8_t tail[32];
  for (size_t i = 0; i < a.cols; i += 32) {
    const int8_t* src = w8 + i;
    if (i + 32 > a.cols) {  // the row ends inside this chunk: never read past it
      std::memset(tail, 0, sizeof tail);
      std::memcpy(tail, src, a.cols - i);
      src = tail;
    }
    const __m256i w = load256(src);
    const __m256i aw = _mm256_sign_epi8(w, w);
    for (size_t k = 0; k < NT; ++k) {
      const __m256i sx = _mm256_sign_epi8(load256(a.q.data() + (t0 + k) * a.stride + i), w);
      acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones));
    }
  }
  const float sw = f32_at(row);
  for (size_t k = 0; k < NT; ++k) out[k] = static_cast<float>(hsum_i32(acc[k])) * (sw * a.token_scale[t0 + k]);
}

// E4M3 -> f16 is a shift: S.EEEE.MMM lands as S.0EEEE.MMM0000000, i.e. the value times 2^-8 with
// subnormals mapping onto f16 subnormals, which F16C converts exactly (no float denormals).
template <size_t NT>
void fp8_tile(const uint8_t* row, const Activations& a, size_t t0, float* out) {
  const uint8_t* w8 = row + kRowAlign;
  __m256 acc[NT][2];
  for (auto& t : acc) t[0] = t[1] = _mm256_setzero_ps();
  alignas(16) uint8_t tail[16];
  for (size_t i = 0; i < a.cols; i += 16) {
    const uint8_t* src = w8 + i;
    if (i + 16 > a.cols) {
      std::memset(tail, 0, sizeof tail);
      std::memcpy(tail, src, a.cols - i);
      src = tail;
    }
    const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x7F)), 7),
                                      _mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x80)), 8));
    const __m256 lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    const __m256 hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
    for (size_t k = 0; k < NT; ++k) {
      const float* x = a.f.data() + (t0 + k) * a.stride + i;
      acc[k][0] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x), acc[k][0]);
      acc[k][1] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 8), acc[k][1]);
    }
  }
  const float sw = f32_at(row) * 256.0f;
  for (size_t k = 0; k < NT; ++k) out[k] = hsum(_mm256_add_ps(acc[k][0], acc[k][1])) * (sw * a.token_scale[t0 + k]);
}

// W4A16 / W4A8: nibbles decoded to float weights n * scale + offset once per sub-block (see
// qdot.cc), then plain FMAs against float activations for each token.
template <model::DType T, size_t NT>
void int4_tile(const uint8_t* row, const Activations& a, size_t t0, float* out) {
  constexpr size_t C = kChains<NT>;
  const uint8_t* data = row + row_data_offset(T, a.cols, a.group);
  __m256 acc[NT][C];
  for (auto& t : acc)
    for (auto& c : t) c = _mm256_setzero_ps();
  const size_t subblocks = (a.cols + 31) / 32, per_group = a.group / 32;
  for (size_t sb = 0; sb < subblocks; ++sb) {
    const size_t g = sb / per_group;
    float scale, offset;
    if constexpr (T == model::DType::W4A16) {
      scale = f16_at(row + 4 * g);
      offset = f16_at(row + 4 * g + 2);
    } else {
      // E4M3 -> f32 through the same shift as fp8_tile, then undo the 2^-8.
      const uint16_t h = static_cast<uint16_t>(((row[4 + g] & 0x7F) << 7) | ((row[4 + g] & 0x80) << 8));
      scale = _cvtsh_ss(h) * 256.0f;
      offset = -8.0f * scale;
    }
    const __m256 vs = _mm256_set1_ps(scale), vo = _mm256_set1_ps(offset);
    const __m256i n = nibbles32(data + 16 * sb);
    const __m128i n0 = _mm256_castsi256_si128(n), n1 = _mm256_extracti128_si256(n, 1);
    __m256 w[4] = {
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(n0)), vs, vo),
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(n0, 8))), vs, vo),
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(n1)), vs, vo),
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(n1, 8))), vs, vo),
    };
    for (size_t k = 0; k < NT; ++k) {
      const float* x = a.f.data() + (t0 + k) * a.stride + 32 * sb;
      for (size_t j = 0; j < 4; ++j) acc[k][j % C] = _mm256_fmadd_ps(w[j], _mm256_loadu_ps(x + 8 * j), acc[k][j % C]);
    }
  }
  for (size_t k = 0; k < NT; ++k) {
    __m256 s = acc[k][0];
    for (size_t c = 1; c < C; ++c) s = _mm256_add_ps(s, acc[k][c]);
    out[k] = T == model::DType::W4A16 ? hsum(s) : hsum(s) * (f32_at(row) * a.token_scale[t0 + k]);
  }
}

template <template <size_t> class K>
void by_tile(const uint8_t* row, const Activations& a, size_t t0, size_t nt, float* out) {
  switch (nt) {
    case 1: return K<1>::run(row, a, t0, out);
    case 2: return K<2>::run(row, a, t0, out);
    case 3: return K<3>::run(row, a, t0, out);
    default: return K<4>::run(row, a, t0, out);
  }
}

template <size_t NT> struct Q8 { static void run(const uint8_t* r, const Activations& a, size_t t, float* o) { q8_0_tile<NT>(r, a, t, o); } };
template <size_t NT> struct Q4 { static void run(const uint8_t* r, const Activations& a, size_t t, float* o) { q4_0_tile<NT>(r, a, t, o); } };
template <size_t NT> struct W8 { static void run(const uint8_t* r, const Activations& a, size_t t, float* o) { w8a8_tile<NT>(r, a, t, o); } };
template <size_t NT> struct F8 { static void run(const uint8_t* r, const Activations& a, size_t t, float* o) { fp8_tile<NT>(r, a, t, o); } };
template <size_t NT> struct W4A16 { static void run(const uint8_t* r, const Activations& a, size_t t, float* o) { int4_tile<model::DType::W4A16, NT>(r, a, t, o); } };
template <size_t NT> struct W4A8 { static void run(const uint8_t* r, const Activations& a, size_t t, float* o) { int4_tile<model::DType::W4A8, NT>(r, a, t, o); } };

}  // namespace

// The entries of quant/weight_traits.cc's rows at Level::Avx2.
namespace dot_avx2 {
void q8_0(const uint8_t* r, const Activations& a, size_t t0, size_t nt, float* o) { by_tile<Q8>(r, a, t0, nt, o); }
void q4_0(const uint8_t* r, const Activations& a, size_t t0, size_t nt, float* o) { by_tile<Q4>(r, a, t0, nt, o); }
void w8a8(const uint8_t* r, const Activations& a, size_t t0, size_t nt, float* o) { by_tile<W8>(r, a, t0, nt, o); }
void fp8(const uint8_t* r, const Activations& a, size_t t0, size_t nt, float* o) { by_tile<F8>(r, a, t0, nt, o); }
void w4a16(const uint8_t* r, const Activations& a, size_t t0, size_t nt, float* o) { by_tile<W4A16>(r, a, t0, nt, o); }
void w4a8(const uint8_t* r, const Activations& a, size_t t0, size_t nt, float* o) { by_tile<W4A8>(r, a, t0, nt, o); }
}  // namespace dot_avx2

}  // namespace fineserve::quant
