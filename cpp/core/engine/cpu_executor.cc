#include "engine/cpu_executor.h"

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "engine/llama_forward.h"
#include "engine/step_plan.h"
#include "engine/thread_pool.h"

namespace fineserve::engine {

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
    check_kv_geometry(model.config, o.kv_format, layout_);
    if (pool.base() == nullptr || pool.memory() != "host") {
      throw std::invalid_argument("the CPU executor needs a KV slab in host memory (memory = \"host\")");
    }
  }

  uint32_t vocab_size() const override { return model_.config.vocab_size; }
  uint32_t max_context() const override { return model_.config.max_context; }

  StepPlan plan(const std::vector<SequenceChunk>& batch) const override {
    return plan_step(batch, vocab_size(), max_context(), pool_, kv_model_);
  }

  StepOutput run(const StepPlan& plan, const std::vector<SequenceChunk>& batch, bool return_logits) override {
    std::unique_lock<std::mutex> claimed = threads_->claim();
    std::vector<ops::PagedSequence> seqs(plan.seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const PlannedSequence& p = plan.seqs[i];
      ops::PagedSequence& s = seqs[i];
      s.position = p.position;
      s.n_tokens = p.n_tokens;
      s.row = p.row;
      s.blocks.reserve(p.block_offsets.size());
      for (uint64_t off : p.block_offsets) s.blocks.push_back(pool_.base() + off);
    }
    const std::vector<int32_t>& tokens = plan.tokens;
    const std::vector<uint32_t>& logit_rows = plan.logit_rows;

    const uint32_t vocab = vocab_size();
    logits_.resize(logit_rows.size() * static_cast<size_t>(vocab));
    if (!tokens.empty()) forward_.run(tokens, seqs, logit_rows, logits_.data());

    return sample_step(batch, logits_, vocab, return_logits, threads_.get());
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
