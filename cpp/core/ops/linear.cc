#include "ops/linear.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "gemm/gemm.h"
#include "gemm/packed.h"
#include "gemm/row_blocks.h"
#include "gemm/packed_w8a8.h"
#include "ops/rows.h"
#include "quant/kquant_linear.h"
#include "quant/qdot.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

namespace {
// Weight rows converted per batch: enough to amortise the conversion and keep the block in L1/L2
// while every token's row of x streams past it.
constexpr size_t kRowBlock = 16;

void check_layout(const model::TensorView& w) {
  const std::string why = quant::row_layout_error(w.dtype, w.cols(), w.group);
  if (!why.empty()) throw std::invalid_argument("linear: tensor \"" + w.name + "\": " + why);
  const uint64_t need = w.rows() * quant::row_bytes(w.dtype, w.cols(), w.group);
  if (!w.packed_only && w.bytes < need) {  // a copy packed at load has a size of its own
    throw std::invalid_argument("linear: tensor \"" + w.name + "\" holds " + std::to_string(w.bytes) +
                                " bytes, its shape needs " + std::to_string(need));
  }
}

// Quantized types with an integer/fused kernel: activations prepared once, then each weight row
// is read once and dotted with kTokenTile tokens at a time while it sits in L1.
void linear_qdot(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w,
                 const float* bias, float* y, simd::Level level) {
  const size_t out = w.rows(), in = w.cols();
  thread_local quant::Activations acts;
  quant::prepare_activations(w.dtype, w.group, x, tokens, in, w.input_scale, acts);
  const quant::RowDot dot = quant::row_dot(w.dtype, level);
  const uint64_t stride = quant::row_bytes(w.dtype, in, w.group);
  const quant::Activations& a = acts;
  pool.parallel_for((out + kRowBlock - 1) / kRowBlock, [&](size_t begin, size_t end) {
    float tile[quant::kTokenTile];
    for (size_t r = begin * kRowBlock; r < std::min(out, end * kRowBlock); ++r) {
      const uint8_t* row = w.data + r * stride;
      const float b = bias ? bias[r] : 0.0f;
      for (size_t t0 = 0; t0 < tokens; t0 += quant::kTokenTile) {
        const size_t nt = std::min(quant::kTokenTile, tokens - t0);
        dot(row, a, t0, nt, tile);
        for (size_t k = 0; k < nt; ++k) y[(t0 + k) * out + r] = tile[k] + b;
      }
    }
  });
}

using gemm::for_row_blocks;
using gemm::gemm_block_rows;

// Multiplies x by the AWQ/SmoothQuant input scale into `scaled`, or returns x when there is none.
const float* apply_input_scale(const float* x, size_t tokens, size_t in, const float* input_scale,
                               std::vector<float>& scaled) {
  if (input_scale == nullptr) return x;
  scaled.resize(tokens * in);
  for (size_t i = 0; i < tokens * in; ++i) scaled[i] = x[i] * input_scale[i % in];
  return scaled.data();
}

// Q8_0 / Q4_0 through the packed integer GEMM (gemm/packed.h): the weights interleaved 16 rows
// per block once (on first use), the activations quantized to Q8_0 once per call.
void linear_packed(engine::ThreadPool& pool, const gemm::PackedKernels& k, const float* x, size_t tokens,
                   const model::TensorView& w, const float* bias, float* y) {
  const size_t out = w.rows(), in = w.cols();
  const gemm::PackedWeights& p = gemm::packed_for(w);
  thread_local gemm::PackedActs acts;
  thread_local std::vector<float> scaled;
  k.quantize(apply_input_scale(x, tokens, in, w.input_scale, scaled), tokens, in, acts);
  const gemm::PackedActs& a = acts;  // this thread's: the pool's threads have their own `acts`
  const gemm::PackedFn fn = gemm::packed_kernel(k, w.dtype);
  // Blocks of whole 4-group decode tiles (64 rows).
  const size_t rows = gemm_block_rows(p.group_bytes / gemm::kPackRows, out, pool.size(), 4 * gemm::kPackRows);
  for_row_blocks(pool, out, rows, [&](size_t r0, size_t r1) { fn(p, a, tokens, r0, r1, bias, y, out); });
}

// W8A8 through its packed integer GEMM (gemm/packed_w8a8.h): the rows interleaved 16 per group
// once (on first use), the activations quantized per token once per call (input_scale applied).
void linear_w8a8(engine::ThreadPool& pool, const gemm::W8A8Kernels& k, const float* x, size_t tokens,
                 const model::TensorView& w, const float* bias, float* y) {
  const size_t out = w.rows(), in = w.cols();
  const gemm::PackedWeights& p = gemm::packed_for(w);
  thread_local gemm::W8A8Acts acts;
  k.quantize(x, tokens, in, w.input_scale, acts);
  const gemm::W8A8Acts& a = acts;  // this thread's: the pool's threads have their own `acts`
  const size_t rows = gemm_block_rows(in, out, pool.size(), k.unit_rows);
  for_row_blocks(pool, out, rows, [&](size_t r0, size_t r1) { k.gemm(p, a, tokens, r0, r1, bias, y, out); });
}

// The register-blocked GEMM (gemm/gemm.h) for every token count, decode included, so that a
// token's outputs do not depend on how many others share the call.
void linear_gemm(engine::ThreadPool& pool, gemm::BlockFn kernel, const float* x, size_t tokens,
                 const model::TensorView& w, const float* bias, float* y) {
  const size_t out = w.rows(), in = w.cols();
  gemm::Operands op;
  op.w = w.data;
  op.w_stride = quant::row_bytes(w.dtype, in, w.group);
  op.k = in;
  op.bias = bias;
  op.y = y;
  op.y_stride = out;
  op.group = w.group;
  op.x_stride = in;
  thread_local quant::Activations acts;
  thread_local std::vector<float> scaled;
  const quant::ActPrep act = quant::traits(w.dtype).act;
  if (act != quant::ActPrep::None) {
    quant::prepare_activations(w.dtype, w.group, x, tokens, in, w.input_scale, acts);
    op.acts = &acts;
    // W4A16, FP8, W4A8: float activations (E4M3 values for the last two, scaled per token).
    op.x = acts.f.empty() ? nullptr : acts.f.data();
    op.x_stride = acts.stride;
    if (act == quant::ActPrep::E4M3PerToken) op.token_scale = acts.token_scale.data();
  } else {
    op.x = apply_input_scale(x, tokens, in, w.input_scale, scaled);
  }
  const size_t rows = gemm_block_rows(op.w_stride, out, pool.size());
  for_row_blocks(pool, out, rows, [&](size_t r0, size_t r1) { kernel(op, tokens, r0, r1); });
}

}  // namespace

void linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w,
            const model::TensorView* bias, float* y) {
  linear(pool, x, tokens, w, bias, y, simd::active().level);
}

void linear(engine::ThreadPool& pool, const float* x, size_t tokens, const model::TensorView& w,
            const model::TensorView* bias, float* y, simd::Level level) {
  check_layout(w);
  const size_t out = w.rows(), in = w.cols();
  const simd::Kernels& k = *simd::kernels_for(level);
  std::vector<float> bias_f32;
  if (bias != nullptr && bias->data != nullptr) {
    bias_f32.resize(out);
    load_f32(*bias, 0, out, bias_f32.data());
  }
  // Q4_K / Q6_K: integer dots against Q8_K activations (quant/kquant_dot.h).
  // A view packed at load (TensorView::packed_only) has no rows in the file's layout: it takes its
  // packed path whatever FINESERVE_GEMM / FINESERVE_GEMM_PACK say.
  if ((gemm::enabled() || w.packed_only) &&
      quant::kquant::linear(pool, x, tokens, w, bias_f32.empty() ? nullptr : bias_f32.data(), y, level)) {
    return;
  }
  const float* b = bias_f32.empty() ? nullptr : bias_f32.data();
  const bool gemm_on = gemm::enabled();
  const gemm::PackedKernels* packed = gemm_on && gemm::packable(w.dtype) && gemm::pack_enabled()
                                          ? gemm::packed_kernels_for(level)
                                          : nullptr;
  if (packed == nullptr && w.packed_only && gemm::packable(w.dtype)) {
    packed = gemm::packed_kernels_for(level);
    if (packed == nullptr) packed = &gemm::packed_reference_kernels();
  }
  if (packed != nullptr) {
    linear_packed(pool, *packed, x, tokens, w, b, y);
    return;
  }
  const bool is_w8a8 = w.dtype == model::DType::W8A8;
  const gemm::W8A8Kernels* w8a8 = is_w8a8 && ((gemm_on && gemm::pack_enabled()) || w.packed_only)
                                      ? gemm::w8a8_kernels_for(level)
                                      : nullptr;
  if (w8a8 == nullptr && is_w8a8 && w.packed_only) w8a8 = &gemm::w8a8_reference_kernels();
  if (w8a8 != nullptr) {
    linear_w8a8(pool, *w8a8, x, tokens, w, b, y);
    return;
  }
  const gemm::BlockFn gemm_kernel = gemm_on ? gemm::block_kernel(w.dtype, level) : nullptr;
  if (gemm_kernel != nullptr) {
    linear_gemm(pool, gemm_kernel, x, tokens, w, bias_f32.empty() ? nullptr : bias_f32.data(), y);
    return;
  }
  const quant::WeightTypeTraits& type = quant::traits(w.dtype);
  if (type.act != quant::ActPrep::None) {
    linear_qdot(pool, x, tokens, w, bias_f32.empty() ? nullptr : bias_f32.data(), y, level);
    return;
  }
  std::vector<float> scaled;
  if (w.input_scale != nullptr) {
    scaled.resize(tokens * in);
    for (size_t i = 0; i < tokens * in; ++i) scaled[i] = x[i] * w.input_scale[i % in];
    x = scaled.data();
  }
  pool.parallel_for((out + kRowBlock - 1) / kRowBlock, [&](size_t begin, size_t end) {
    // F32 rows are used in place; F16/BF16 and the K-quants (f32 activations, see
    // weight_format.h) are decoded once per call into the block, then reused by every token.
    // Every token count takes this one path (no fused 16-bit dot for decode): the fused dots sum
    // in another order at some levels, which broke batch invariance (test_gemm.cc).
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
