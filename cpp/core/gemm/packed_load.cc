#include "gemm/packed_load.h"

#include <map>

#include "gemm/gemm.h"
#include "gemm/packed_k.h"
#include "gemm/packed_w8a8.h"
#include "quant/kquant_dot.h"

namespace fineserve::gemm {

bool packs(const model::TensorView& t) {
  // W8A8's quantizer applies the input scale itself (gemm/packed_w8a8.h).
  if (t.dtype == model::DType::W8A8) return t.shape.size() == 2 && enabled() && pack_enabled() && w8a8_kernels_for(simd::active().level) != nullptr;
  if (t.shape.size() != 2 || t.input_scale != nullptr || !enabled() || !pack_enabled()) return false;
  const simd::Level level = simd::active().level;
  if (packable(t.dtype)) return packed_kernels_for(level) != nullptr;
  return packable_k(t.dtype) && quant::kquant::enabled() && packed_k_kernels_for(level) != nullptr;
}

size_t pack_linear_weights(model::LlamaWeights& w) {
  size_t packed = 0;
  std::map<const uint8_t*, std::shared_ptr<const PackedWeights>> done;  // views sharing bytes share the copy
  auto pack_view = [&](model::TensorView& t) {
    if (t.packed_only || t.data == nullptr || !packs(t)) return;
    std::shared_ptr<const PackedWeights>& p = done[t.data];
    if (!p) p = pack_any(t.dtype, t.data, t.rows(), t.cols());
    t.packed = p;
    t.data = p->bytes.data();
    t.bytes = p->bytes.size();
    t.packed_only = true;
    ++packed;
  };
  for (model::LlamaLayerWeights& l : w.layers) {
    for (model::TensorView* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) pack_view(*t);
  }
  // A tied output is the embedding, whose rows the lookup reads in the file's layout.
  if (w.output.data != w.token_embedding.data) pack_view(w.output);
  return packed;
}

void unpack_any_row(const PackedWeights& w, size_t r, uint8_t* out) {
  if (w.dtype == model::DType::W8A8) return unpack_w8a8_row(w, r, out);
  if (packable_k(w.dtype)) {
    unpack_k_row(w, r, out);
  } else {
    unpack_row(w, r, out);
  }
}

}  // namespace fineserve::gemm
