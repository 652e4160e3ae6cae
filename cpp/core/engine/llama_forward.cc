#include "engine/llama_forward.h"

#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "ops/rows.h"
#include "simd/dispatch.h"

namespace fineserve::engine {

LlamaForward::LlamaForward(const model::LoadedModel& model, const kv::KvLayout& layout, ThreadPool& pool)
    : model_(model), layout_(layout), pool_(pool), inv_freq_(ops::rope_inv_freq(model.config)) {}

void LlamaForward::run(const std::vector<int32_t>& tokens, const std::vector<ops::PagedSequence>& seqs,
                       const std::vector<uint32_t>& logit_rows, float* logits) {
  const model::LlamaConfig& c = model_.config;
  const model::LlamaWeights& w = model_.weights;
  const size_t n = tokens.size(), hidden = c.hidden_size, ffn = c.intermediate_size;
  const size_t q_dim = static_cast<size_t>(c.num_heads) * c.head_dim;
  const size_t kv_dim = static_cast<size_t>(c.num_kv_heads) * c.head_dim;
  x_.resize(n * hidden);
  xn_.resize(n * hidden);
  q_.resize(n * q_dim);
  k_.resize(n * kv_dim);
  v_.resize(n * kv_dim);
  attn_.resize(n * q_dim);
  gate_.resize(n * ffn);
  up_.resize(n * ffn);

  for (size_t r = 0; r < n; ++r) ops::load_row(w.token_embedding, static_cast<uint64_t>(tokens[r]), x_.data() + r * hidden);

  for (uint32_t l = 0; l < c.num_layers; ++l) {
    const model::LlamaLayerWeights& lw = w.layers[l];
    ops::rms_norm(x_.data(), n, hidden, lw.attn_norm, c.rms_norm_eps, xn_.data());
    ops::linear(pool_, xn_.data(), n, lw.wq, &lw.bq, q_.data());
    ops::linear(pool_, xn_.data(), n, lw.wk, &lw.bk, k_.data());
    ops::linear(pool_, xn_.data(), n, lw.wv, &lw.bv, v_.data());
    using P = ForwardObserver::Point;
    observe(l, P::AttnInput, xn_.data(), n, hidden);
    observe(l, P::Query, q_.data(), n, q_dim);
    observe(l, P::Key, k_.data(), n, kv_dim);
    for (const ops::PagedSequence& s : seqs) {
      for (uint32_t t = 0; t < s.n_tokens; ++t) {
        size_t r = s.row + t;
        ops::apply_rope(q_.data() + r * q_dim, c.num_heads, c.head_dim, s.position + t, c.rope_style, inv_freq_);
        ops::apply_rope(k_.data() + r * kv_dim, c.num_kv_heads, c.head_dim, s.position + t, c.rope_style, inv_freq_);
      }
    }
    ops::write_kv(layout_, l, seqs, k_.data(), v_.data());
    ops::attention(pool_, layout_, l, c.num_heads, seqs, q_.data(), attn_.data());
    observe(l, P::OInput, attn_.data(), n, q_dim);
    // The output projection lands in xn_ (free now) and is added to the residual stream.
    ops::linear(pool_, attn_.data(), n, lw.wo, nullptr, xn_.data());
    for (size_t i = 0; i < n * hidden; ++i) x_[i] += xn_[i];

    ops::rms_norm(x_.data(), n, hidden, lw.ffn_norm, c.rms_norm_eps, xn_.data());
    observe(l, P::MlpInput, xn_.data(), n, hidden);
    ops::linear(pool_, xn_.data(), n, lw.w_gate, nullptr, gate_.data());
    ops::linear(pool_, xn_.data(), n, lw.w_up, nullptr, up_.data());
    // SwiGLU, one token's row per call: each element's lane depends only on its column, so a
    // token's result does not depend on how many tokens share the step.
    pool_.parallel_for(n, [&](size_t begin, size_t end) {
      for (size_t r = begin; r < end; ++r) {
        simd::active().silu_mul_f32(gate_.data() + r * ffn, up_.data() + r * ffn, gate_.data() + r * ffn, ffn);
      }
    });
    observe(l, P::DownInput, gate_.data(), n, ffn);
    ops::linear(pool_, gate_.data(), n, lw.w_down, nullptr, xn_.data());
    for (size_t i = 0; i < n * hidden; ++i) x_[i] += xn_[i];
  }

  // Only the rows that sample need the final norm and the (vocabulary-sized) output projection.
  last_.resize(logit_rows.size() * hidden);
  for (size_t i = 0; i < logit_rows.size(); ++i) {
    std::copy_n(x_.data() + static_cast<size_t>(logit_rows[i]) * hidden, hidden, last_.data() + i * hidden);
  }
  ops::rms_norm(last_.data(), logit_rows.size(), hidden, w.output_norm, c.rms_norm_eps, last_.data());
  ops::linear(pool_, last_.data(), logit_rows.size(), w.output, nullptr, logits);
}

}  // namespace fineserve::engine
