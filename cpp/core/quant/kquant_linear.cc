#include "quant/kquant_linear.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "quant/kquant_dot.h"
#include "quant/weight_format.h"

namespace fineserve::quant::kquant {

bool linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w, const float* bias,
            float* y, simd::Level level) {
  const DotFn dot = dot_kernel(w.dtype, level);
  if (dot == nullptr || !enabled()) return false;
  const size_t out = w.rows(), in = w.cols();
  thread_local std::vector<float> scaled;
  if (w.input_scale != nullptr) {  // smoothing scales, applied before quantizing as every format does
    scaled.resize(tokens * in);
    for (size_t i = 0; i < tokens * in; ++i) scaled[i] = x[i] * w.input_scale[i % in];
    x = scaled.data();
  }
  thread_local Q8K acts;
  quantize_q8_k(x, tokens, in, acts);
  const size_t stride = row_bytes(w.dtype, in);
  // Blocks of rows small enough that every thread gets several (a thread whose core another
  // process takes does not hold the step), claimed from a shared counter; the arithmetic of a
  // row does not depend on which thread computes it.
  const size_t rows = std::clamp<size_t>(out / (8 * pool.size()), 8, 64);
  const size_t blocks = (out + rows - 1) / rows;
  std::atomic<size_t> next{0};
  const Q8K& a = acts;
  pool.parallel_for(std::min<size_t>(pool.size(), blocks), [&](size_t, size_t) {
    for (size_t b = next.fetch_add(1, std::memory_order_relaxed); b < blocks;
         b = next.fetch_add(1, std::memory_order_relaxed)) {
      dot(w.data, stride, a, b * rows, std::min(out, (b + 1) * rows), bias, y, out);
    }
  });
  return true;
}

}  // namespace fineserve::quant::kquant
