// Rows of the decoded GEMM types (W4A16, W4A8, FP8) widened to floats 16 lanes at a time, for
// gemm_avx512.cc. Same values as gemm_avx2.cc's decoders: an int4 element is int4_group's
// n * scale + offset, an FP8 element its E4M3 value times the row scale (one product). Include
// only from a translation unit compiled with the AVX-512 flags.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gemm/e4m3_f16c.h"
#include "model/tensor.h"
#include "quant/weight_format.h"

namespace fineserve::gemm::avx512 {

// A row of 32-element nibble sub-blocks -> floats, whole sub-blocks: y holds cols rounded up to 32
// (the row's bytes are padded to whole sub-blocks, so the last one is read in full).
template <model::DType T>
void decode_int4(const uint8_t* row, size_t cols, uint32_t group, float* y) {
  const uint8_t* data = row + quant::row_data_offset(T, cols, group);
  float rs = 1.0f;
  if constexpr (T == model::DType::W4A8) std::memcpy(&rs, row, 4);
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  const size_t subs = (cols + 31) / 32, per_group = group / 32;  // groups are whole sub-blocks
  for (size_t g = 0, sb = 0; sb < subs; ++g) {
    const Int4Group q = int4_group<T>(row, g, rs);
    const __m512 vs = _mm512_set1_ps(q.scale), vo = _mm512_set1_ps(q.offset);
    for (const size_t end = std::min(subs, sb + per_group); sb < end; ++sb) {
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * sb)));
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, low4));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4));
      _mm512_storeu_ps(y + 32 * sb, _mm512_fmadd_ps(lo, vs, vo));
      _mm512_storeu_ps(y + 32 * sb + 16, _mm512_fmadd_ps(hi, vs, vo));
    }
  }
}

// FP8 rows -> floats e4m3(q) * row scale (the token's scale is applied after the sum); y holds
// cols rounded up to 16 (rows are padded to 16 bytes).
inline void decode_fp8(const uint8_t* row, size_t cols, uint32_t, float* y) {
  float scale;
  std::memcpy(&scale, row, 4);
  const __m512 vs = _mm512_set1_ps(scale * 256.0f);
  for (size_t i = 0; i < cols; i += 16) {
    const __m256i h = e4m3_to_f16_bits(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 + i))));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_cvtph_ps(h), vs));
  }
}

}  // namespace fineserve::gemm::avx512
