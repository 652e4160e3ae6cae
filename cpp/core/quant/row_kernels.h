// The per-type kernels the rows of quant/weight_traits.cc name, declared where the table can see
// them. Each lives in its own file, next to its siblings: decoders in dequantize.cc, encoders in
// quantize.cc, row dots per SIMD level in qdot.cc (baseline), qdot_avx2.cc, qdot_avx512.cc. Nothing
// but the table (and the kernels' own files) should call them directly: dispatch goes through
// quant::traits(t).
#pragma once

#include <cstdint>

#include "quant/qdot.h"

namespace fineserve::quant {

// Decodes one row of `cols` elements into floats (group: W4A16 / W4A8 only).
using DecodeRow = void (*)(const uint8_t* src, uint64_t cols, uint32_t group, float* dst);
// Quantizes one row of `cols` floats; dst holds row_bytes() bytes, already zeroed.
using EncodeRow = void (*)(const float* src, uint64_t cols, uint32_t group, uint8_t* dst);

namespace decode {  // dequantize.cc
void f32(const uint8_t*, uint64_t, uint32_t, float*);
void f16(const uint8_t*, uint64_t, uint32_t, float*);
void bf16(const uint8_t*, uint64_t, uint32_t, float*);
void q8_0(const uint8_t*, uint64_t, uint32_t, float*);
void q4_0(const uint8_t*, uint64_t, uint32_t, float*);
void q4_k(const uint8_t*, uint64_t, uint32_t, float*);
void q6_k(const uint8_t*, uint64_t, uint32_t, float*);
void w8a8(const uint8_t*, uint64_t, uint32_t, float*);
void fp8(const uint8_t*, uint64_t, uint32_t, float*);
void w4a16(const uint8_t*, uint64_t, uint32_t, float*);
void w4a8(const uint8_t*, uint64_t, uint32_t, float*);
}  // namespace decode

namespace encode {  // quantize.cc
void q8_0(const float*, uint64_t, uint32_t, uint8_t*);
void q4_0(const float*, uint64_t, uint32_t, uint8_t*);
void w8a8(const float*, uint64_t, uint32_t, uint8_t*);
void fp8(const float*, uint64_t, uint32_t, uint8_t*);
void w4a16(const float*, uint64_t, uint32_t, uint8_t*);
void w4a8(const float*, uint64_t, uint32_t, uint8_t*);
void q4_k(const float*, uint64_t, uint32_t, uint8_t*);  // kquant_quantize.cc
void q6_k(const float*, uint64_t, uint32_t, uint8_t*);  // kquant_quantize.cc
}  // namespace encode

#define FINESERVE_ROW_DOTS                                                  \
  void q8_0(const uint8_t*, const Activations&, size_t, size_t, float*);  \
  void q4_0(const uint8_t*, const Activations&, size_t, size_t, float*);  \
  void w8a8(const uint8_t*, const Activations&, size_t, size_t, float*);  \
  void fp8(const uint8_t*, const Activations&, size_t, size_t, float*);   \
  void w4a16(const uint8_t*, const Activations&, size_t, size_t, float*); \
  void w4a8(const uint8_t*, const Activations&, size_t, size_t, float*);

namespace dot_baseline { FINESERVE_ROW_DOTS }  // qdot.cc
namespace dot_avx2 { FINESERVE_ROW_DOTS }      // qdot_avx2.cc, compiled with FINESERVE_HAVE_AVX2
#undef FINESERVE_ROW_DOTS

}  // namespace fineserve::quant
