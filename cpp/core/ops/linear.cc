#include "ops/linear.h"

#include <vector>

#include "ops/rows.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

namespace {
// Weight rows converted per batch: enough to amortise the conversion and keep the block in L1/L2
// while every token's row of x streams past it.
constexpr size_t kRowBlock = 16;
// Up to this many tokens, a half-precision row is decoded in registers once per token instead of
// into a float buffer once: for decode, the buffer round trip would double the memory traffic.
constexpr size_t kFusedTokens = 2;
}  // namespace

void linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w,
            const model::TensorView* bias, float* y) {
  const size_t out = w.rows(), in = w.cols();
  const simd::Kernels& k = simd::active();
  std::vector<float> bias_f32;
  if (bias != nullptr && bias->data != nullptr) {
    bias_f32.resize(out);
    load_f32(*bias, 0, out, bias_f32.data());
  }
  const bool fused = tokens <= kFusedTokens && w.dtype != model::DType::F32;
  auto fused_dot = w.dtype == model::DType::F16 ? k.dot_f16_f32 : k.dot_bf16_f32;
  pool.parallel_for((out + kRowBlock - 1) / kRowBlock, [&](size_t begin, size_t end) {
    if (fused) {
      const uint16_t* base = reinterpret_cast<const uint16_t*>(w.data);
      for (size_t r = begin * kRowBlock; r < std::min(out, end * kRowBlock); ++r) {
        for (size_t t = 0; t < tokens; ++t) {
          float v = fused_dot(base + r * in, x + t * in, in);
          y[t * out + r] = bias_f32.empty() ? v : v + bias_f32[r];
        }
      }
      return;
    }
    thread_local std::vector<float> block;
    block.resize(kRowBlock * in);
    for (size_t b = begin; b < end; ++b) {
      size_t r0 = b * kRowBlock, r1 = std::min(out, r0 + kRowBlock);
      const float* rows[kRowBlock];
      for (size_t r = r0; r < r1; ++r) {
        const float* direct = f32_row(w, r);
        if (direct == nullptr) {
          load_row(w, r, block.data() + (r - r0) * in);
          direct = block.data() + (r - r0) * in;
        }
        rows[r - r0] = direct;
      }
      for (size_t t = 0; t < tokens; ++t) {
        const float* xt = x + t * in;
        float* yt = y + t * out;
        for (size_t r = r0; r < r1; ++r) {
          float v = k.dot_f32(rows[r - r0], xt, in);
          yt[r] = bias_f32.empty() ? v : v + bias_f32[r];
        }
      }
    }
  });
}

}  // namespace fineserve::ops
