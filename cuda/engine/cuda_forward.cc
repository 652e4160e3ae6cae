#include "engine/cuda_forward.h"

#include <algorithm>
#include <cstring>

#include "ops/rope.h"

namespace fineserve::gpu {

namespace {

// Lays the step's index arrays out in one host buffer, so they reach the device in one copy.
class StagingLayout {
 public:
  template <class T>
  size_t add(size_t count) {
    at_ = (at_ + 7) / 8 * 8;
    size_t offset = at_;
    at_ += count * sizeof(T);
    return offset;
  }
  size_t bytes() const { return at_; }

 private:
  size_t at_ = 0;
};

}  // namespace

CudaForward::CudaForward(const model::LlamaConfig& config, DeviceWeights weights, const kv::KvLayout& layout,
                         uint8_t* slab, Stream stream)
    : config_(config), layout_(layout), slab_(slab), stream_(stream), weights_(std::move(weights)) {
  const std::vector<double> inv = ops::rope_inv_freq(config);
  inv_freq_ = DeviceBuffer(inv.size() * sizeof(double), "rope inv_freq");
  copy_to_device(inv_freq_.as(), inv.data(), inv.size() * sizeof(double), stream_);
  stream_sync(stream_);
}

void CudaForward::reserve(uint32_t n, uint32_t rows, uint32_t max_context, size_t staging_bytes) {
  const model::LlamaConfig& c = config_;
  staging_.reserve(staging_bytes, "step indices");
  attn_scratch_.reserve(paged_attention_scratch_bytes(layout_, c.num_heads, n, max_context), "attention scratch");
  k4_snapshots_.reserve(k4_snapshot_bytes(layout_, n), "int4 K snapshots");
  if (n > capacity_tokens_) {
    const size_t hidden = c.hidden_size, ffn = c.intermediate_size;
    const size_t q_dim = size_t{c.num_heads} * c.head_dim, kv_dim = size_t{c.num_kv_heads} * c.head_dim;
    x_ = DeviceBuffer(n * hidden * 4, "activations x");
    xn_ = DeviceBuffer(n * hidden * 4, "activations xn");
    q_ = DeviceBuffer(n * q_dim * 4, "activations q");
    k_ = DeviceBuffer(n * kv_dim * 4, "activations k");
    v_ = DeviceBuffer(n * kv_dim * 4, "activations v");
    attn_ = DeviceBuffer(n * q_dim * 4, "activations attn");
    gate_ = DeviceBuffer(n * ffn * 4, "activations gate");
    up_ = DeviceBuffer(n * ffn * 4, "activations up");
    size_t scratch = linear_scratch_bytes(weights_.output, n);
    for (const DeviceLayerWeights& l : weights_.layers) {
      for (const DeviceMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
        scratch = std::max(scratch, linear_scratch_bytes(*m, n));
      }
    }
    scratch_ = DeviceBuffer(scratch, "linear scratch");
    capacity_tokens_ = n;
  }
  if (rows > capacity_logit_rows_) {
    last_ = DeviceBuffer(size_t{rows} * c.hidden_size * 4, "last rows");
    logits_ = DeviceBuffer(size_t{rows} * c.vocab_size * 4, "logits");
    sampled_ = DeviceBuffer(size_t{rows} * 8, "sampled tokens");
    capacity_logit_rows_ = rows;
  }
}

void CudaForward::run(const engine::StepPlan& plan, Sampling sampling, Output& out) {
  const model::LlamaConfig& c = config_;
  const uint32_t n = static_cast<uint32_t>(plan.tokens.size());
  const uint32_t n_logits = static_cast<uint32_t>(plan.logit_rows.size());
  const uint32_t n_seqs = static_cast<uint32_t>(plan.seqs.size());
  const bool greedy = sampling == Sampling::DeviceGreedy;
  out.logits.resize(greedy ? 0 : size_t{n_logits} * c.vocab_size);
  out.tokens.resize(greedy ? n_logits : 0);
  out.logprobs.resize(greedy ? n_logits : 0);
  if (n == 0) return;

  size_t n_blocks = 0;
  for (const engine::PlannedSequence& s : plan.seqs) n_blocks += s.block_offsets.size();
  StagingLayout lay;
  const size_t at_tokens = lay.add<int32_t>(n), at_seq = lay.add<uint32_t>(n), at_pos = lay.add<uint32_t>(n),
               at_first = lay.add<uint32_t>(n_seqs), at_blocks = lay.add<uint64_t>(n_blocks),
               at_logit_rows = lay.add<uint32_t>(std::max<uint32_t>(n_logits, 1)),
               at_spans = lay.add<AttentionSpan>(n_seqs), at_singles = lay.add<uint32_t>(n);
  host_staging_.assign(lay.bytes(), 0);
  uint8_t* h = host_staging_.data();
  std::memcpy(h + at_tokens, plan.tokens.data(), n * sizeof(int32_t));
  auto* seq_of = reinterpret_cast<uint32_t*>(h + at_seq);
  auto* pos_of = reinterpret_cast<uint32_t*>(h + at_pos);
  auto* first = reinterpret_cast<uint32_t*>(h + at_first);
  auto* blocks = reinterpret_cast<uint64_t*>(h + at_blocks);
  auto* spans = reinterpret_cast<AttentionSpan*>(h + at_spans);
  auto* singles = reinterpret_cast<uint32_t*>(h + at_singles);
  uint32_t max_context = 0, next_block = 0, n_spans = 0, max_span_rows = 0, n_singles = 0;
  for (uint32_t s = 0; s < n_seqs; ++s) {
    const engine::PlannedSequence& ps = plan.seqs[s];
    first[s] = next_block;
    for (uint64_t off : ps.block_offsets) blocks[next_block++] = off;
    for (uint32_t t = 0; t < ps.n_tokens; ++t) {
      seq_of[ps.row + t] = s;
      pos_of[ps.row + t] = ps.position + t;
    }
    max_context = std::max(max_context, ps.position + ps.n_tokens);
    // A chunk's rows are consecutive tokens of its sequence: attention can tile them.
    if (ps.n_tokens >= kAttentionSpanMinRows) {
      spans[n_spans++] = AttentionSpan{ps.row, ps.n_tokens};
      max_span_rows = std::max(max_span_rows, ps.n_tokens);
    } else {
      for (uint32_t t = 0; t < ps.n_tokens; ++t) singles[n_singles++] = ps.row + t;
    }
  }
  std::memcpy(h + at_logit_rows, plan.logit_rows.data(), n_logits * sizeof(uint32_t));

  reserve(n, n_logits, max_context, lay.bytes());
  copy_to_device(staging_.as(), h, lay.bytes(), stream_);
  const uint8_t* d = staging_.as<uint8_t>();
  const auto* d_tokens = reinterpret_cast<const int32_t*>(d + at_tokens);
  const auto* d_pos = reinterpret_cast<const uint32_t*>(d + at_pos);
  PagedBatch batch;
  batch.slab = slab_;
  batch.block_offsets = reinterpret_cast<const uint64_t*>(d + at_blocks);
  batch.seq_first_block = reinterpret_cast<const uint32_t*>(d + at_first);
  batch.token_seq = reinterpret_cast<const uint32_t*>(d + at_seq);
  batch.token_pos = d_pos;
  batch.n_tokens = n;
  batch.max_context = max_context;
  batch.spans = reinterpret_cast<const AttentionSpan*>(d + at_spans);
  batch.single_rows = reinterpret_cast<const uint32_t*>(d + at_singles);
  batch.n_spans = n_spans;
  batch.max_span_rows = max_span_rows;
  batch.n_single_rows = n_singles;
  batch.k4_snapshots = k4_snapshots_.as<uint8_t>();

  const uint32_t hidden = c.hidden_size, ffn = c.intermediate_size;
  const size_t nh = size_t{n} * hidden;
  float *x = x_.as<float>(), *xn = xn_.as<float>(), *q = q_.as<float>(), *k = k_.as<float>(), *v = v_.as<float>();
  float *attn = attn_.as<float>(), *gate = gate_.as<float>(), *up = up_.as<float>();
  void* scratch = scratch_.as();
  const bool interleaved = c.rope_style == model::RopeStyle::Interleaved;
  const auto* inv_freq = inv_freq_.as<double>();

  embed(d_tokens, n, weights_.token_embedding, x, stream_);
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    const DeviceLayerWeights& w = weights_.layers[l];
    rms_norm(x, n, hidden, w.attn_norm, c.rms_norm_eps, xn, stream_);
    linear(xn, n, w.wq, w.bq, q, scratch, stream_);
    linear(xn, n, w.wk, w.bk, k, scratch, stream_);
    linear(xn, n, w.wv, w.bv, v, scratch, stream_);
    rope(q, n, c.num_heads, c.head_dim, d_pos, inv_freq, interleaved, stream_);
    rope(k, n, c.num_kv_heads, c.head_dim, d_pos, inv_freq, interleaved, stream_);
    write_kv(layout_, l, batch, k, v, stream_);
    paged_attention(layout_, l, c.num_heads, batch, q, attn, attn_scratch_.as(), stream_);
    linear(attn, n, w.wo, nullptr, xn, scratch, stream_);
    add_inplace(x, xn, nh, stream_);
    rms_norm(x, n, hidden, w.ffn_norm, c.rms_norm_eps, xn, stream_);
    linear(xn, n, w.w_gate, nullptr, gate, scratch, stream_);
    linear(xn, n, w.w_up, nullptr, up, scratch, stream_);
    silu_mul(gate, up, size_t{n} * ffn, stream_);
    linear(gate, n, w.w_down, nullptr, xn, scratch, stream_);
    add_inplace(x, xn, nh, stream_);
  }
  if (n_logits > 0) {
    // Only the rows that sample need the final norm and the vocabulary-sized projection.
    float* last = last_.as<float>();
    gather_rows(x, reinterpret_cast<const uint32_t*>(d + at_logit_rows), n_logits, hidden, last, stream_);
    rms_norm(last, n_logits, hidden, weights_.output_norm, c.rms_norm_eps, last, stream_);
    linear(last, n_logits, weights_.output, nullptr, logits_.as<float>(), scratch, stream_);
    if (greedy) {
      // Ids and log-probabilities cross to the host, not [rows][vocab] logits.
      auto* ids = sampled_.as<int32_t>();
      auto* lps = reinterpret_cast<float*>(ids + n_logits);
      greedy_sample(logits_.as<float>(), n_logits, c.vocab_size, ids, lps, stream_);
      copy_to_host(out.tokens.data(), ids, n_logits * sizeof(int32_t), stream_);
      copy_to_host(out.logprobs.data(), lps, n_logits * sizeof(float), stream_);
    } else {
      copy_to_host(out.logits.data(), logits_.as(), out.logits.size() * sizeof(float), stream_);
    }
  }
  // The staging buffer and the logits are host memory the stream reads and writes.
  stream_sync(stream_);
}

}  // namespace fineserve::gpu
