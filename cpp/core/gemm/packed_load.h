// Packing a loaded model's linear weights once, at load, so that the packed copy (gemm/packed.h,
// gemm/packed_k.h) is their only copy in memory and the bytes the model reports are the bytes it
// holds. Without this, linear() packs on first use and the file's bytes stay resident too: two
// copies of every Q8_0 / Q4_0 / Q4_K / Q6_K matrix, one of them never counted.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gemm/packed.h"
#include "model/llama_weights.h"

namespace fineserve::gemm {

// True when linear() at the active SIMD level, with the environment as it is now
// (FINESERVE_GEMM, FINESERVE_GEMM_PACK, FINESERVE_KQUANT_DOT), reads `t` through a packed GEMM.
bool packs(const model::TensorView& t);

// Replaces the storage of every linear weight packs() accepts (the layers' seven matrices, and
// the output projection when it is not the token embedding) by its packed copy: data and bytes
// then describe the copy and packed_only is set (model/tensor.h), so the file's bytes are read
// by no view and the loader gives their pages back. Returns the number of views packed.
size_t pack_linear_weights(model::LlamaWeights& w);

// Row r of a packed matrix of any packed type in the file's block layout.
void unpack_any_row(const PackedWeights& w, size_t r, uint8_t* out);

}  // namespace fineserve::gemm
