// y = x W^T + b for a batch of rows: the projections of attention and the MLP, and the logits.
#pragma once

#include <cstddef>

#include "engine/thread_pool.h"
#include "model/tensor.h"

namespace fineserve::ops {

// x: [tokens][in] float32; w: {out, in} in any weight type; bias: {out} or nullptr (data null);
// y: [tokens][out]. Work is split over output rows, so each weight row is read from memory once
// per call whatever the number of tokens: decode is bound by weight bandwidth, as it should be.
void linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w,
            const model::TensorView* bias, float* y);

}  // namespace fineserve::ops
