// linear() for Q4_K / Q6_K weights with activations quantized to Q8_K once per call: the packed
// integer GEMM (gemm/packed_k.h; the rows interleaved 16 per group, at load or on first use), or
// with FINESERVE_GEMM_PACK=0 the row dots of quant/kquant_dot.h (the same arithmetic, bit for bit);
// blocks of output rows claimed by the pool's threads.
#pragma once

#include <cstddef>

#include "engine/thread_pool.h"
#include "model/tensor.h"
#include "simd/dispatch.h"

namespace fineserve::quant::kquant {

// y = x W^T (+ bias, f32, may be null) for a Q4_K / Q6_K weight (input_scale applied first); returns
// false without touching y for any other weight, or when FINESERVE_KQUANT_DOT=0.
bool linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w, const float* bias,
            float* y, simd::Level level);

}  // namespace fineserve::quant::kquant
