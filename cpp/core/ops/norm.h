// RMSNorm: x / sqrt(mean(x^2) + eps) * weight, per row.
#pragma once

#include <cstddef>

#include "model/tensor.h"

namespace fineserve::ops {

// x, out: [rows][dim] (may alias); weight: {dim}.
void rms_norm(const float* x, size_t rows, size_t dim, const model::TensorView& weight, float eps, float* out);

}  // namespace fineserve::ops
