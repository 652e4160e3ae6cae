// AVX-512 float micro-kernels of the GEMM (gemm.h): F32, F16 and BF16 weights in their file layout,
// the AVX2 tiles (gemm_avx2.cc) widened to 16 lanes and 32 registers. Compiled with the AVX-512
// flags of its object library, reached only through gemm::kernels_for() at Level::Avx512.
//
// A tile is RT tokens x RW weight rows, one 16-lane accumulator per output element, reduced by one
// fixed horizontal sum at the end: 4 x 6 for prefill (24 FMAs for 10 loads, 31 registers), 2 x 8,
// and 1 x 8 for decode (eight independent FMA chains). The same accumulation order in every tile
// shape keeps a token's outputs bit-identical alone and in a batch (within this level).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "gemm/decode_avx512.h"
#include "gemm/gemm.h"

namespace fineserve::gemm {
namespace {

constexpr size_t kMaxTokens = 4;
constexpr size_t rows_for(size_t tokens) { return tokens >= 3 ? 6 : 8; }

template <FloatWeights W>
inline __m512 load_w(const uint8_t* row, size_t k) {
  if constexpr (W == FloatWeights::F32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k));
    if constexpr (W == FloatWeights::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// The last n < 16 elements, zeros past the end (no read beyond it).
template <FloatWeights W>
inline __m512 load_w_tail(const uint8_t* row, size_t k, __mmask16 m) {
  if constexpr (W == FloatWeights::F32) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, row + 2 * k);
    if constexpr (W == FloatWeights::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// Out of line for the reason gemm_avx2.cc's finish() is: an inlined `v * scale + bias` may be
// contracted differently in different tile shapes.
__attribute__((noinline)) float finish(float v, const Operands& op, size_t token, size_t row) {
  if (op.token_scale != nullptr) v *= op.token_scale[token];
  return op.bias != nullptr ? v + op.bias[row] : v;
}

constexpr size_t kPrefetchTiles = 2;

template <FloatWeights W, size_t RT, size_t RW>
void float_tile(const Operands& op, size_t t0, size_t r0) {
  __m512 acc[RT][RW];
  for (auto& t : acc)
    for (auto& a : t) a = _mm512_setzero_ps();
  const uint8_t* w = op.w + r0 * op.w_stride;
  const float* x = op.x + t0 * op.x_stride;
  constexpr size_t kStepBytes = W == FloatWeights::F32 ? 64 : 32;
  // The next tile's rows, prefetched at the pace this tile reads its own (see gemm_avx2.cc).
  const uint8_t* next = w + kPrefetchTiles * RW * op.w_stride;
  size_t k = 0;
  for (; k + 16 <= op.k; k += 16) {
    const uint8_t* p = next + (k / 16) * RW * kStepBytes;
    for (size_t off = 0; off < RW * kStepBytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
    __m512 wv[RW];
    for (size_t r = 0; r < RW; ++r) wv[r] = load_w<W>(w + r * op.w_stride, k);
    for (size_t t = 0; t < RT; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * op.x_stride + k);
      for (size_t r = 0; r < RW; ++r) acc[t][r] = _mm512_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  if (k < op.k) {
    const __mmask16 m = static_cast<__mmask16>((1u << (op.k - k)) - 1);
    __m512 wv[RW];
    for (size_t r = 0; r < RW; ++r) wv[r] = load_w_tail<W>(w + r * op.w_stride, k, m);
    for (size_t t = 0; t < RT; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + t * op.x_stride + k);
      for (size_t r = 0; r < RW; ++r) acc[t][r] = _mm512_fmadd_ps(wv[r], xv, acc[t][r]);
    }
  }
  for (size_t t = 0; t < RT; ++t) {
    for (size_t r = 0; r < RW; ++r) {
      op.y[(t0 + t) * op.y_stride + r0 + r] = finish(_mm512_reduce_add_ps(acc[t][r]), op, t0 + t, r0 + r);
    }
  }
}

// One token: whole rows one after another, so the weights stream in address order. A 1 x 8 tile
// reads eight streams a row apart, which the prefetchers follow worse even with the tile
// prefetch above: on one Zen 4 core, F16 rows of 768 / 2,048 / 5,632 halves stream at 30 / 17-28
// / under 20 GB/s as tiles and at 37 / 35 / 34 GB/s in order with a software prefetch 8 KiB ahead
// (STREAM-like read: 37 GB/s). Each row's sum is float_tile's chain of FMAs, in the same order,
// so the bits are those of a 1 x RW tile; the out-of-order core overlaps consecutive rows' chains.
constexpr size_t kInOrderPrefetchBytes = 8192;

template <FloatWeights W>
void rows_in_order(const Operands& op, size_t t0, size_t r0, size_t r1) {
  const float* x = op.x + t0 * op.x_stride;
  constexpr size_t kStepBytes = W == FloatWeights::F32 ? 64 : 32;
  constexpr size_t kStepsPerLine = 64 / kStepBytes;
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* w = op.w + r * op.w_stride;
    __m512 acc = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 16 * kStepsPerLine <= op.k; k += 16 * kStepsPerLine) {
      _mm_prefetch(reinterpret_cast<const char*>(w + (k / 16) * kStepBytes + kInOrderPrefetchBytes), _MM_HINT_T0);
      for (size_t s = 0; s < kStepsPerLine; ++s) {
        acc = _mm512_fmadd_ps(load_w<W>(w, k + 16 * s), _mm512_loadu_ps(x + k + 16 * s), acc);
      }
    }
    for (; k + 16 <= op.k; k += 16) acc = _mm512_fmadd_ps(load_w<W>(w, k), _mm512_loadu_ps(x + k), acc);
    if (k < op.k) {
      const __mmask16 m = static_cast<__mmask16>((1u << (op.k - k)) - 1);
      acc = _mm512_fmadd_ps(load_w_tail<W>(w, k, m), _mm512_maskz_loadu_ps(m, x + k), acc);
    }
    op.y[t0 * op.y_stride + r] = finish(_mm512_reduce_add_ps(acc), op, t0, r);
  }
}

template <FloatWeights W, size_t RT>
void rows_switch(size_t nr, const Operands& op, size_t t0, size_t r0) {
  switch (nr) {
    case 1: return float_tile<W, RT, 1>(op, t0, r0);
    case 2: return float_tile<W, RT, 2>(op, t0, r0);
    case 3: return float_tile<W, RT, 3>(op, t0, r0);
    case 4: return float_tile<W, RT, 4>(op, t0, r0);
    case 5: return float_tile<W, RT, 5>(op, t0, r0);
    case 6: return float_tile<W, RT, 6>(op, t0, r0);
    case 7:
      if constexpr (RT <= 2) return float_tile<W, RT, 7>(op, t0, r0);
      [[fallthrough]];
    default:
      if constexpr (RT <= 2) return float_tile<W, RT, 8>(op, t0, r0);
      return float_tile<W, RT, 6>(op, t0, r0);
  }
}

// Token tiles outside, row tiles inside: a tile's activations stay in L1 while the block's weight
// rows (sized by linear() to sit in L2) stream past them.
// InOrder: a lone token reads whole rows in address order (weights from DRAM); without it, 1 x 8
// tiles, whose eight FMA chains run side by side (weights already in cache: decoded rows).
template <FloatWeights W, bool InOrder = true>
void block(const Operands& op, size_t tokens, size_t r0, size_t r1) {
  for (size_t t0 = 0; t0 < tokens; t0 += kMaxTokens) {
    const size_t nt = std::min(kMaxTokens, tokens - t0), rw = rows_for(nt);
    if (InOrder && nt == 1) {
      rows_in_order<W>(op, t0, r0, r1);
      continue;
    }
    for (size_t r = r0; r < r1; r += rw) {
      const size_t nr = std::min(rw, r1 - r);
      switch (nt) {
        case 1: rows_switch<W, 1>(nr, op, t0, r); break;
        case 2: rows_switch<W, 2>(nr, op, t0, r); break;
        case 3: rows_switch<W, 3>(nr, op, t0, r); break;
        default: rows_switch<W, 4>(nr, op, t0, r); break;
      }
    }
  }
}

// W4A16, W4A8, FP8: rows decoded to floats a chunk at a time (decode_avx512.h), then the F32
// tiles above for every token count, so a token's outputs are the same bits alone and in a
// batch. A decode chunk stays in L1 for one token and is larger for prefill, so the activations
// stream past fewer chunks. (AVX2's decoded kernels run 8-lane tiles on 8-lane decodes: one
// W4A16 token took 2.8x an F16 one on a model with 4x fewer weight bytes.)
constexpr size_t kDecodeL1Bytes = 32 * 1024;
constexpr size_t kDecodeChunkBytes = 160 * 1024;

template <void (*Decode)(const uint8_t*, size_t, uint32_t, float*)>
void decoded_block(const Operands& op, size_t tokens, size_t r0, size_t r1) {
  const size_t kp = (op.k + 31) / 32 * 32;  // a decoded row, whole sub-blocks
  // One token: 8 rows (a 1 x 8 tile) while they fit in L1, else 4 (1 x 4); prefill: multiples of
  // 24, whole 4 x 6 and 2 x 8 tiles.
  const size_t chunk = tokens == 1 ? std::max<size_t>(4, std::min<size_t>(8, kDecodeL1Bytes / (4 * kp)))
                                   : std::max<size_t>(24, kDecodeChunkBytes / (4 * kp) / 24 * 24);
  thread_local std::vector<float> rows;
  rows.resize(chunk * kp);
  Operands sub = op;
  sub.w = reinterpret_cast<const uint8_t*>(rows.data());
  sub.w_stride = 4 * kp;
  for (size_t c0 = r0; c0 < r1; c0 += chunk) {
    const size_t n = std::min(chunk, r1 - c0);
    for (size_t r = 0; r < n; ++r) {
      const uint8_t* row = op.w + (c0 + r) * op.w_stride;
      // The file rows stream in order; fetch ahead of the decode as rows_in_order does.
      for (size_t off = 0; off < op.w_stride; off += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(row + off + kInOrderPrefetchBytes), _MM_HINT_T0);
      }
      Decode(row, op.k, op.group, rows.data() + r * kp);
    }
    sub.y = op.y + c0;
    sub.bias = op.bias != nullptr ? op.bias + c0 : nullptr;
    block<FloatWeights::F32, false>(sub, tokens, 0, n);
  }
}

}  // namespace

extern const BlockFn kAvx512Decoded[3];
const BlockFn kAvx512Decoded[3] = {decoded_block<avx512::decode_int4<model::DType::W4A16>>,
                                   decoded_block<avx512::decode_int4<model::DType::W4A8>>,
                                   decoded_block<avx512::decode_fp8>};

extern const BlockFn kAvx512Float[3];
const BlockFn kAvx512Float[3] = {block<FloatWeights::F32>, block<FloatWeights::F16>, block<FloatWeights::BF16>};

}  // namespace fineserve::gemm
