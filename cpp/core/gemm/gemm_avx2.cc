// AVX2 + FMA + F16C micro-kernels of the GEMM (gemm.h). Compiled with -mavx2 -mfma -mf16c and
// reached only through gemm::kernels_for() after the host was checked.
//
// A tile is RT tokens x RW weight rows, one 8-lane accumulator per output element. Per step the
// kernel loads RW weight vectors once and RT activation vectors once and issues RT * RW FMAs (4 x 3:
// 12 FMAs for 7 loads; the per-row dot it replaces issued one FMA per two loads). Decode (one
// token) runs 1 x 8 tiles: eight independent accumulator chains hide the FMA latency, and the
// arithmetic of each element is the same as in a prefill tile.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm/e4m3_f16c.h"
#include "gemm/gemm.h"
#include "quant/weight_format.h"

namespace fineserve::gemm {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Tile widths by token count: 4 tokens x 3 rows = 12 accumulators + 3 weights + 1 activation;
// one token x 8 rows keeps eight independent FMA chains in flight for decode.
constexpr size_t kMaxTokens = 4;
constexpr size_t rows_for(size_t tokens) { return tokens >= 3 ? 3 : tokens == 2 ? 4 : 8; }

// Lane mask for the last n < 8 elements of a row: the tail is read with masked loads (zeros
// past the end, no read beyond it), so it is one more step of the same accumulation.
inline __m256i tail_mask(size_t n) {
  alignas(32) static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 - n));
}

template <FloatWeights W>
inline __m256 load_w(const uint8_t* row, size_t k) {
  if constexpr (W == FloatWeights::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k));
    if constexpr (W == FloatWeights::F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <FloatWeights W>
inline __m256 load_w_tail(const uint8_t* row, size_t k, size_t n) {
  if constexpr (W == FloatWeights::F32) {
    return _mm256_maskload_ps(reinterpret_cast<const float*>(row) + k, tail_mask(n));
  } else {
    alignas(16) uint16_t buf[8] = {};
    std::memcpy(buf, row + 2 * k, 2 * n);
    return load_w<W>(reinterpret_cast<const uint8_t*>(buf), 0);
  }
}

// The token's scale and the bias, out of line: inlined into each tile shape, `v * scale + bias`
// may be contracted into an FMA in one shape and not in another (C++ allows it), which would
// break batch invariance.
__attribute__((noinline)) float finish(float v, const Operands& op, size_t token, size_t row) {
  if (op.token_scale != nullptr) v *= op.token_scale[token];
  return op.bias != nullptr ? v + op.bias[row] : v;
}

// The next tile's weight rows are contiguous with this tile's: prefetching them at the pace this
// tile consumes its own turns the RW short row streams (too short for the hardware prefetcher to
// lock on: a decode step ran 2-3x slower than a row-by-row GEMV from DRAM) into one long one.
constexpr size_t kPrefetchTiles = 2;  // how many tiles ahead

template <size_t RW, size_t StepBytes>
inline void prefetch_next_tile(const uint8_t* next, size_t step) {
  const uint8_t* p = next + step * RW * StepBytes;
  for (size_t off = 0; off < RW * StepBytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
}

template <FloatWeights W, size_t RT, size_t RW>
void float_tile(const Operands& op, size_t t0, size_t r0) {
  __m256 acc[RT][RW];
  for (auto& t : acc)
    for (auto& a : t) a = _mm256_setzero_ps();
  const uint8_t* w = op.w + r0 * op.w_stride;
  const float* x = op.x + t0 * op.x_stride;
  size_t k = 0;
  const uint8_t* next = w + kPrefetchTiles * RW * op.w_stride;
  constexpr size_t kStepBytes = W == FloatWeights::F32 ? 32 : 16;
  for (; k + 8 <= op.k; k += 8) {
    prefetch_next_tile<RW, kStepBytes>(next, k / 8);
    __m256 wv[RW];
    for (size_t r = 0; r < RW; ++r) wv[r] = load_w<W>(w + r * op.w_stride, k);
    for (size_t t = 0; t < RT; ++t) {
      const __m256 xv = _mm256_loadu_ps(x + t * op.x_stride + k);
      for (size_t r = 0; r < RW; ++r) acc[t][r] = _mm256_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  if (k < op.k) {
    const size_t n = op.k - k;
    const __m256i mask = tail_mask(n);
    __m256 wv[RW];
    for (size_t r = 0; r < RW; ++r) wv[r] = load_w_tail<W>(w + r * op.w_stride, k, n);
    for (size_t t = 0; t < RT; ++t) {
      const __m256 xv = _mm256_maskload_ps(x + t * op.x_stride + k, mask);
      for (size_t r = 0; r < RW; ++r) acc[t][r] = _mm256_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  for (size_t t = 0; t < RT; ++t) {
    for (size_t r = 0; r < RW; ++r) {
      op.y[(t0 + t) * op.y_stride + r0 + r] = finish(hsum(acc[t][r]), op, t0 + t, r0 + r);
    }
  }
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of a Q4_0 block -> its 32 nibbles 0..15 in element order (low nibbles first).
inline __m256i nibbles32(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

// Q8_0 / Q4_0 weights against Q8_0-block activations, llama.cpp's x86 recipe per 32-block
// (maddubs of unsigned x signed bytes into int16 pairs, madd into int32, one FMA by the two f16
// scales' product), one float accumulator per element over the blocks in order. Q4_0's "- 8" is
// Activations::q4_offset, subtracted in the same int16 lanes (see qdot_avx2.cc).
template <bool Q4, size_t RT, size_t RW>
void quant_tile(const Operands& op, size_t t0, size_t r0) {
  constexpr size_t kBlockBytes = Q4 ? 18 : 34;
  const quant::Activations& a = *op.acts;
  const size_t nb = op.k / 32, xb = a.stride / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[RT][RW];
  for (auto& t : acc)
    for (auto& v : t) v = _mm256_setzero_ps();
  const uint8_t* w = op.w + r0 * op.w_stride;
  const uint8_t* next = w + kPrefetchTiles * RW * op.w_stride;
  for (size_t b = 0; b < nb; ++b) {
    prefetch_next_tile<RW, kBlockBytes>(next, b);
    __m256i wu[RW], ws[RW];  // unsigned operand; Q8_0: the signs it moves onto x
    float dw[RW];
    for (size_t r = 0; r < RW; ++r) {
      const uint8_t* blk = w + r * op.w_stride + kBlockBytes * b;
      dw[r] = f16_at(blk);
      if constexpr (Q4) {
        wu[r] = nibbles32(blk + 2);
      } else {
        ws[r] = load256(blk + 2);
        wu[r] = _mm256_sign_epi8(ws[r], ws[r]);  // |w| (|-128| = 128 as unsigned)
      }
    }
    for (size_t t = 0; t < RT; ++t) {
      const size_t tok = t0 + t;
      const __m256i xq = load256(a.q.data() + tok * a.stride + 32 * b);
      const float dx = a.block_scale[tok * xb + b];
      __m256i off;
      if constexpr (Q4) off = load256(a.q4_offset.data() + (tok * xb + b) * 16);
      for (size_t r = 0; r < RW; ++r) {
        __m256i p;
        if constexpr (Q4) {
          p = _mm256_sub_epi16(_mm256_maddubs_epi16(wu[r], xq), off);
        } else {
          p = _mm256_maddubs_epi16(wu[r], _mm256_sign_epi8(xq, ws[r]));
        }
        const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
        acc[t][r] = _mm256_fmadd_ps(s, _mm256_set1_ps(dw[r] * dx), acc[t][r]);
      }
    }
  }
  for (size_t t = 0; t < RT; ++t) {
    for (size_t r = 0; r < RW; ++r) {
      const float v = hsum(acc[t][r]);
      op.y[(t0 + t) * op.y_stride + r0 + r] = op.bias ? v + op.bias[r0 + r] : v;
    }
  }
}

// Tile<RT, RW>::run for the edge tiles as well as the full ones.
template <template <size_t, size_t> class Tile, size_t RT>
void rows_switch(size_t nr, const Operands& op, size_t t0, size_t r0) {
  switch (nr) {
    case 1: return Tile<RT, 1>::run(op, t0, r0);
    case 2: return Tile<RT, 2>::run(op, t0, r0);
    case 3: return Tile<RT, 3>::run(op, t0, r0);
    case 4: return Tile<RT, 4>::run(op, t0, r0);
    default:
      if constexpr (RT == 1) {  // only decode tiles are wider than 4 rows
        switch (nr) {
          case 5: return Tile<1, 5>::run(op, t0, r0);
          case 6: return Tile<1, 6>::run(op, t0, r0);
          case 7: return Tile<1, 7>::run(op, t0, r0);
          default: return Tile<1, 8>::run(op, t0, r0);
        }
      }
      return Tile<RT, 4>::run(op, t0, r0);
  }
}

template <template <size_t, size_t> class Tile>
void tile_switch(size_t nt, size_t nr, const Operands& op, size_t t0, size_t r0) {
  switch (nt) {
    case 1: return rows_switch<Tile, 1>(nr, op, t0, r0);
    case 2: return rows_switch<Tile, 2>(nr, op, t0, r0);
    case 3: return rows_switch<Tile, 3>(nr, op, t0, r0);
    default: return rows_switch<Tile, 4>(nr, op, t0, r0);
  }
}

// Token tiles outside, row tiles inside: a tile's activations stay in L1 while the block's weight
// rows (sized by the caller to sit in L2) stream past them.
template <template <size_t, size_t> class Tile>
void block(const Operands& op, size_t tokens, size_t r0, size_t r1) {
  for (size_t t0 = 0; t0 < tokens; t0 += kMaxTokens) {
    const size_t nt = std::min(kMaxTokens, tokens - t0), rw = rows_for(nt);
    for (size_t r = r0; r < r1; r += rw) tile_switch<Tile>(nt, std::min(rw, r1 - r), op, t0, r);
  }
}

template <size_t RT, size_t RW> struct TileF32 { static void run(const Operands& o, size_t t, size_t r) { float_tile<FloatWeights::F32, RT, RW>(o, t, r); } };
template <size_t RT, size_t RW> struct TileF16 { static void run(const Operands& o, size_t t, size_t r) { float_tile<FloatWeights::F16, RT, RW>(o, t, r); } };
template <size_t RT, size_t RW> struct TileBF16 { static void run(const Operands& o, size_t t, size_t r) { float_tile<FloatWeights::BF16, RT, RW>(o, t, r); } };
template <size_t RT, size_t RW> struct TileQ8 { static void run(const Operands& o, size_t t, size_t r) { quant_tile<false, RT, RW>(o, t, r); } };
template <size_t RT, size_t RW> struct TileQ4 { static void run(const Operands& o, size_t t, size_t r) { quant_tile<true, RT, RW>(o, t, r); } };

// ---- K-quants and the fineserve formats: rows decoded to f32 a few at a time, then F32 tiles --
// Decoding a row once per call and reusing it for every token costs little beside the FMAs; the
// products are those of the F32 kernel on the decoded weights, in the same order for every tile.

// Eight bytes (unsigned, or signed when Signed) at p as floats.
template <bool Signed>
inline __m256 bytes8_to_ps(__m128i v) {
  return _mm256_cvtepi32_ps(Signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v));
}

// 32 bytes -> 32 floats scale * q - offset, in four stores of eight (as decode::q4_k computes).
inline void store_scaled32(__m256i q, float scale, float offset, float* y) {
  const __m256 vs = _mm256_set1_ps(scale), vo = _mm256_set1_ps(offset);
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int j = 0; j < 4; ++j) _mm256_storeu_ps(y + 8 * j, _mm256_sub_ps(_mm256_mul_ps(vs, bytes8_to_ps<false>(parts[j])), vo));
}

void decode_q4_k(const uint8_t* p, size_t cols, uint32_t, float* y) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (size_t b = 0; b < cols / 256; ++b, p += 144) {
    const float d = f16_at(p), dmin = f16_at(p + 2);
    const uint8_t* s = p + 4;
    int sc[8], m[8];
    for (int i = 0; i < 4; ++i) {
      sc[i] = s[i] & 63;
      m[i] = s[i + 4] & 63;
      sc[i + 4] = (s[i + 8] & 15) | ((s[i] >> 6) << 4);
      m[i + 4] = (s[i + 8] >> 4) | ((s[i + 4] >> 6) << 4);
    }
    for (int k = 0; k < 4; ++k, y += 64) {
      const __m256i q = load256(p + 16 + 32 * k);
      store_scaled32(_mm256_and_si256(q, low4), d * sc[2 * k], dmin * m[2 * k], y);
      store_scaled32(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), d * sc[2 * k + 1], dmin * m[2 * k + 1], y + 32);
    }
  }
}

// 32 signed q values (-32..31) -> floats d * sc * q, scales sc[0] for the first 16, sc[1] after.
inline void store_q6(__m256i q, float d, const int8_t* sc, float* y) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m256 s0 = _mm256_set1_ps(d * sc[0]), s1 = _mm256_set1_ps(d * sc[1]);
  _mm256_storeu_ps(y, _mm256_mul_ps(s0, bytes8_to_ps<true>(lo)));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(s0, bytes8_to_ps<true>(_mm_srli_si128(lo, 8))));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(s1, bytes8_to_ps<true>(hi)));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(s1, bytes8_to_ps<true>(_mm_srli_si128(hi, 8))));
}

void decode_q6_k(const uint8_t* p, size_t cols, uint32_t, float* y) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3), bias = _mm256_set1_epi8(32);
  for (size_t b = 0; b < cols / 256; ++b, p += 210) {
    const float d = f16_at(p + 208);
    for (int h = 0; h < 2; ++h, y += 128) {
      const __m256i ql0 = load256(p + 64 * h), ql1 = load256(p + 64 * h + 32), qh = load256(p + 128 + 32 * h);
      const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192 + 8 * h);
      // Byte-wise shifts through 16-bit lanes: the masks drop what crosses from the neighbour byte.
      auto high2 = [&](int shift) { return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), two), 4); };
      const __m256i q0 = _mm256_or_si256(_mm256_and_si256(ql0, low4), high2(0));
      const __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql1, low4), high2(2));
      const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), high2(4));
      const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), high2(6));
      store_q6(_mm256_sub_epi8(q0, bias), d, sc, y);
      store_q6(_mm256_sub_epi8(q1, bias), d, sc + 2, y + 32);
      store_q6(_mm256_sub_epi8(q2, bias), d, sc + 4, y + 64);
      store_q6(_mm256_sub_epi8(q3, bias), d, sc + 6, y + 96);
    }
  }
}

// ---- fineserve's int4 and FP8 rows (weight_format.h), decoded the same way --------------------

// A row of 32-element nibble sub-blocks -> floats n * scale_g + offset_g (W4A16: the f16 scale and
// min; W4A8: the E4M3 group scale times the row's power-of-two scale, offset -8 times that: exact).
template <model::DType T>
void decode_int4(const uint8_t* row, size_t cols, uint32_t group, float* y) {
  const uint8_t* data = row + quant::row_data_offset(T, cols, group);
  float rs = 1.0f;
  if constexpr (T == model::DType::W4A8) std::memcpy(&rs, row, 4);
  alignas(32) float tail[32];
  for (size_t sb = 0; sb * 32 < cols; ++sb) {
    const Int4Group q = int4_group<T>(row, sb * 32 / group, rs);
    float* dst = sb * 32 + 32 <= cols ? y + 32 * sb : tail;
    const __m256 vs = _mm256_set1_ps(q.scale), vo = _mm256_set1_ps(q.offset);
    const __m256i n = nibbles32(data + 16 * sb);
    const __m128i lo = _mm256_castsi256_si128(n), hi = _mm256_extracti128_si256(n, 1);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int j = 0; j < 4; ++j) {
      _mm256_storeu_ps(dst + 8 * j, _mm256_add_ps(_mm256_mul_ps(bytes8_to_ps<false>(parts[j]), vs), vo));
    }
    if (dst == tail) std::memcpy(y + 32 * sb, tail, 4 * (cols - 32 * sb));
  }
}

// FP8 rows -> floats e4m3(q) * row scale (the token's scale is applied after the sum).
void decode_fp8(const uint8_t* row, size_t cols, uint32_t, float* y) {
  float scale;
  std::memcpy(&scale, row, 4);
  const __m256 vs = _mm256_set1_ps(scale * 256.0f);
  alignas(16) uint8_t tail_in[16] = {};
  alignas(32) float tail_out[16];
  for (size_t i = 0; i < cols; i += 16) {
    const bool whole = i + 16 <= cols;
    const uint8_t* src = row + 16 + i;
    if (!whole) src = static_cast<const uint8_t*>(std::memcpy(tail_in, src, cols - i));
    float* dst = whole ? y + i : tail_out;
    const __m256i h = e4m3_to_f16_bits(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))));
    _mm256_storeu_ps(dst, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), vs));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), vs));
    if (!whole) std::memcpy(y + i, tail_out, 4 * (cols - i));
  }
}

// Rows decoded per chunk: for decode a chunk stays in L1; for prefill it is larger, so the
// activations stream past fewer chunks.
constexpr size_t kDecodeRowsFew = 24;
constexpr size_t kDecodeChunkBytes = 160 * 1024;

template <void (*Decode)(const uint8_t*, size_t, uint32_t, float*)>
void decoded_block(const Operands& op, size_t tokens, size_t r0, size_t r1) {
  size_t chunk = kDecodeRowsFew;
  if (tokens > kMaxTokens) chunk = std::max(chunk, kDecodeChunkBytes / (4 * op.k) / 24 * 24);
  thread_local std::vector<float> rows;
  rows.resize(chunk * op.k);
  for (size_t c0 = r0; c0 < r1; c0 += chunk) {
    const size_t n = std::min(chunk, r1 - c0);
    for (size_t r = 0; r < n; ++r) Decode(op.w + (c0 + r) * op.w_stride, op.k, op.group, rows.data() + r * op.k);
    Operands sub = op;
    sub.w = reinterpret_cast<const uint8_t*>(rows.data());
    sub.w_stride = 4 * op.k;
    sub.y = op.y + c0;
    sub.bias = op.bias ? op.bias + c0 : nullptr;
    block<TileF32>(sub, tokens, 0, n);
  }
}

}  // namespace

extern const Kernels kAvx2Gemm;
const Kernels kAvx2Gemm = {
    block<TileF32>,
    block<TileF16>,
    block<TileBF16>,
    block<TileQ8>,
    block<TileQ4>,
    decoded_block<decode_q4_k>,
    decoded_block<decode_q6_k>,
    decoded_block<decode_int4<model::DType::W4A16>>,
    decoded_block<decode_int4<model::DType::W4A8>>,
    decoded_block<decode_fp8>,
};

}  // namespace fineserve::gemm
