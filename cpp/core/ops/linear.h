// y = x W^T + b for a batch of rows: the projections of attention and the MLP, and the logits.
#pragma once

#include <cstddef>

#include "engine/thread_pool.h"
#include "model/tensor.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

// x: [tokens][in] float32; w: {out, in} in any weight type; bias: {out} or nullptr (data null);
// y: [tokens][out]. Work is split over output rows, so each weight row is read from memory once
// per call whatever the number of tokens: decode is bound by weight bandwidth, as it should be.
// w.input_scale, when set, multiplies x first; quantized types then quantize x as their format
// defines (quant/weight_format.h) once per call, and take integer or fused dot products.
// Throws std::invalid_argument when w's bytes do not hold {out, in} of its type.
void linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w,
            const model::TensorView* bias, float* y);

// The same with the kernels of a given SIMD level (supported here), for tests and benchmarks.
void linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w,
            const model::TensorView* bias, float* y, simd::Level level);

}  // namespace fineserve::ops
