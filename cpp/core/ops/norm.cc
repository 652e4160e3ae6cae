#include "ops/norm.h"

#include <cmath>
#include <vector>

#include "ops/rows.h"

namespace fineserve::ops {

void rms_norm(const float* x, size_t rows, size_t dim, const model::TensorView& weight, float eps, float* out) {
  std::vector<float> w(dim);
  load_f32(weight, 0, dim, w.data());
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    // The sum of squares is accumulated in double: rows of thousands of activations lose
    // digits in float, and this is a per-row cost, not a per-weight one.
    double ss = 0;
    for (size_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    for (size_t i = 0; i < dim; ++i) o[i] = xr[i] * scale * w[i];
  }
}

}  // namespace fineserve::ops
