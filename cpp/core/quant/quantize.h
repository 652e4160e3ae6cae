// Converting rows of float32 weights into the quantized types and back. quantize_row is what PTQ
// at load and the GGUF writer use; dequantize_row is the reference decoding every kernel must
// agree with (and what embedding lookups use).
#pragma once

#include <cstdint>

#include "model/tensor.h"

namespace fineserve::quant {

// Round-to-nearest quantization of one row. Supported targets: Q8_0, Q4_0 (bit-identical to
// llama.cpp's reference quantizers quantize_row_q8_0_ref / quantize_row_q4_0_ref, so files we
// write quantize exactly as llama-quantize would), Q4_K, Q6_K (kquant_quantize.cc: the search of
// llama.cpp's quantize_row_q4_K_ref / q6_K_ref, step for step), W8A8, FP8, W4A16, W4A8. `dst` receives
// row_bytes(t, cols, group) bytes. Non-finite input is the caller's bug (weights are scanned at
// load); the output is then unspecified but never out of bounds.
void quantize_row(model::DType t, const float* src, uint64_t cols, uint32_t group, uint8_t* dst);

// Decodes one row of any weight type (plain types too) into `cols` floats.
void dequantize_row(model::DType t, const uint8_t* src, uint64_t cols, uint32_t group, float* dst);

// True for the types quantize_row can produce.
bool can_quantize_to(model::DType t);

}  // namespace fineserve::quant
