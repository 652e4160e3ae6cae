#include "engine/cpu_executor.h"

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "engine/llama_forward.h"
#include "engine/thread_pool.h"

namespace fineserve::engine {

kv::KvGeometry kv_geometry_for(const model::LlamaConfig& c, kv::KvFormat format, uint32_t tokens_per_block) {
  return kv::KvGeometry{tokens_per_block, c.num_layers, c.num_kv_heads, c.head_dim, format,
                        kv::default_scale_bytes(format)};
}

namespace {

class CpuExecutor final : public Executor {
 public:
  CpuExecutor(const model::LoadedModel& model, kv::KvSlab& pool, kv::ModelId kv_model, const CpuExecutorOptions& o)
      : model_(model),
        pool_(pool),
        kv_model_(kv_model),
        layout_(pool.layout(kv_model)),
        threads_(o.pool ? o.pool : std::make_shared<ThreadPool>(o.threads)),
        forward_(model, layout_, *threads_) {
    const model::LlamaConfig& c = model.config;
    kv::KvGeometry want = kv_geometry_for(c, o.kv_format, layout_.geometry.tokens_per_block);
    const kv::KvGeometry& have = layout_.geometry;
    if (have.num_layers != want.num_layers || have.num_kv_heads != want.num_kv_heads ||
        have.head_dim != want.head_dim || have.format != want.format || have.scale_bytes != want.scale_bytes) {
      throw std::invalid_argument("the KV model registered with the slab does not match the model's KV geometry (" +
                                  std::to_string(want.num_layers) + " layers x " + std::to_string(want.num_kv_heads) +
                                  " kv heads x " + std::to_string(want.head_dim) + " " + kv::format_name(want.format) +
                                  ", scaleBytes " + std::to_string(want.scale_bytes) + "; registered: " +
                                  std::to_string(have.num_layers) + " x " + std::to_string(have.num_kv_heads) + " x " +
                                  std::to_string(have.head_dim) + " " + kv::format_name(have.format) + ", scaleBytes " +
                                  std::to_string(have.scale_bytes) + ")");
    }
    if (pool.base() == nullptr || pool.memory() != "host") {
      throw std::invalid_argument("the CPU executor needs a KV slab in host memory (memory = \"host\")");
    }
  }

  uint32_t vocab_size() const override { return model_.config.vocab_size; }
  uint32_t max_context() const override { return model_.config.max_context; }

  StepOutput step(const std::vector<SequenceChunk>& batch, bool return_logits) override {
    std::unique_lock<std::mutex> claimed = threads_->claim();
    // Everything is checked before anything is written: a bad chunk leaves every cache untouched.
    std::vector<ops::PagedSequence> seqs(batch.size());
    std::vector<int32_t> tokens;
    std::vector<uint32_t> logit_rows;
    const uint32_t tpb = layout_.geometry.tokens_per_block;
    for (size_t i = 0; i < batch.size(); ++i) {
      const SequenceChunk& ch = batch[i];
      auto bad = [&](const std::string& what) {
        throw std::invalid_argument("batch[" + std::to_string(i) + "]: " + what);
      };
      if (ch.n_tokens == 0 || ch.tokens == nullptr) bad("nTokens = 0: a chunk runs at least one token");
      uint64_t end = static_cast<uint64_t>(ch.position) + ch.n_tokens;
      if (end > max_context()) {
        bad("position " + std::to_string(ch.position) + " + " + std::to_string(ch.n_tokens) +
            " tokens exceeds the model's context of " + std::to_string(max_context()));
      }
      if (static_cast<uint64_t>(ch.n_blocks) * tpb < end) {
        bad(std::to_string(ch.n_blocks) + " blocks hold " + std::to_string(uint64_t{ch.n_blocks} * tpb) +
            " tokens, fewer than the " + std::to_string(end) + " this chunk needs");
      }
      for (uint32_t t = 0; t < ch.n_tokens; ++t) {
        if (ch.tokens[t] < 0 || static_cast<uint32_t>(ch.tokens[t]) >= vocab_size()) {
          bad("token " + std::to_string(ch.tokens[t]) + " is outside the vocabulary of " + std::to_string(vocab_size()));
        }
      }
      if (ch.sample && (ch.sampling == nullptr || ch.sampler_state == nullptr)) bad("sample needs sampling params and state");
      if (ch.sample) {
        std::string err = validate(*ch.sampling);
        if (!err.empty()) bad(err);
        if (ch.sampler_state->output_counts.size() != vocab_size()) {
          bad("the sampler state was not reset for this model's vocabulary (SamplerState::reset)");
        }
      }
      ops::PagedSequence& s = seqs[i];
      s.position = ch.position;
      s.n_tokens = ch.n_tokens;
      s.row = static_cast<uint32_t>(tokens.size());
      uint32_t needed = static_cast<uint32_t>((end + tpb - 1) / tpb);
      s.blocks.reserve(needed);
      for (uint32_t b = 0; b < needed; ++b) {
        // block_offset throws KvError for an id that is not a live block of this model.
        s.blocks.push_back(pool_.base() + pool_.block_offset(kv_model_, ch.block_table[b]));
      }
      tokens.insert(tokens.end(), ch.tokens, ch.tokens + ch.n_tokens);
      if (ch.sample) logit_rows.push_back(s.row + ch.n_tokens - 1);
    }

    const uint32_t vocab = vocab_size();
    logits_.resize(logit_rows.size() * static_cast<size_t>(vocab));
    if (!tokens.empty()) forward_.run(tokens, seqs, logit_rows, logits_.data());

    StepOutput out;
    out.samples.resize(batch.size());
    size_t next = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].sample) continue;
      out.samples[i] = sample(logits_.data() + next * vocab, vocab, *batch[i].sampling, *batch[i].sampler_state);
      ++next;
    }
    if (return_logits) out.logits = logits_;
    return out;
  }

 private:
  const model::LoadedModel& model_;
  kv::KvSlab& pool_;
  kv::ModelId kv_model_;
  const kv::KvLayout layout_;  // a copy: the pool's own may move as other models register
  std::shared_ptr<ThreadPool> threads_;  // before forward_, which keeps a reference to it
  LlamaForward forward_;
  std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<Executor> make_cpu_executor(const model::LoadedModel& model, kv::KvSlab& pool, kv::ModelId kv_model,
                                            const CpuExecutorOptions& options) {
  return std::make_unique<CpuExecutor>(model, pool, kv_model, options);
}

}  // namespace fineserve::engine
