#include "quant/kquant_linear.h"

#include <algorithm>
#include <vector>

#include "gemm/packed.h"
#include "gemm/packed_k.h"
#include "gemm/row_blocks.h"
#include "quant/kquant_dot.h"
#include "quant/weight_format.h"

namespace fineserve::quant::kquant {

bool linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w, const float* bias,
            float* y, simd::Level level) {
  const DotFn dot = dot_kernel(w.dtype, level);
  if (dot == nullptr || !(enabled() || w.packed_only)) return false;
  const size_t out = w.rows(), in = w.cols();
  thread_local std::vector<float> scaled;
  if (w.input_scale != nullptr) {  // smoothing scales, applied before quantizing as every format does
    scaled.resize(tokens * in);
    for (size_t i = 0; i < tokens * in; ++i) scaled[i] = x[i] * w.input_scale[i % in];
    x = scaled.data();
  }
  // The packed GEMM (gemm/packed_k.h) unless FINESERVE_GEMM_PACK=0; always for a view packed at
  // load, which has no rows in the file's layout.
  const gemm::PackedKKernels* packed =
      gemm::pack_enabled() || w.packed_only ? gemm::packed_k_kernels_for(level) : nullptr;
  if (packed == nullptr && w.packed_only) packed = gemm::packed_k_kernels_for(simd::Level::Baseline);
  if (packed != nullptr) {
    const gemm::PackedWeights& p = gemm::packed_for(w);
    thread_local gemm::PackedKActs pacts;
    packed->quantize(x, tokens, in, pacts);
    const gemm::PackedKActs& a = pacts;  // this thread's: the pool's threads have their own
    const gemm::PackedKFn fn = gemm::packed_k_kernel(*packed, w.dtype);
    // Blocks of whole 4-group decode tiles (64 rows), as the Q8_0 / Q4_0 packed path.
    const size_t rows = gemm::gemm_block_rows(p.group_bytes / gemm::kPackRows, out, pool.size(), 4 * gemm::kPackRows);
    gemm::for_row_blocks(pool, out, rows, [&](size_t r0, size_t r1) { fn(p, a, tokens, r0, r1, bias, y, out); });
    return true;
  }
  thread_local Q8K acts;
  quantize_q8_k(x, tokens, in, acts);
  const size_t stride = row_bytes(w.dtype, in);
  const Q8K& a = acts;
  gemm::for_row_blocks(pool, out, std::clamp<size_t>(out / (8 * pool.size()), 8, 64),
                       [&](size_t r0, size_t r1) { dot(w.data, stride, a, r0, r1, bias, y, out); });
  return true;
}

}  // namespace fineserve::quant::kquant
