// The Llama-family forward pass on the CPU for one step's tokens: every layer over all the rows
// of the batch at once (so weights are read once per step), paged attention per sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/thread_pool.h"
#include "kv/kv_geometry.h"
#include "model/loader.h"
#include "ops/attention.h"

namespace fineserve::engine {

// Sees the activations of a forward pass as they are made: how calibration for quantization
// (model/calibration.h) collects its statistics with the very forward pass that serves.
class ForwardObserver {
 public:
  enum class Point : uint8_t {
    AttnInput,   // normed input of q/k/v_proj          [rows][hidden]
    Query,       // q_proj output, before RoPE           [rows][heads * head_dim]
    Key,         // k_proj output, before RoPE           [rows][kv_heads * head_dim]
    OInput,      // attention output, input of o_proj    [rows][heads * head_dim]
    MlpInput,    // normed input of gate/up_proj         [rows][hidden]
    DownInput,   // silu(gate) * up, input of down_proj  [rows][intermediate]
  };
  virtual ~ForwardObserver() = default;
  virtual void observe(uint32_t layer, Point point, const float* x, size_t rows, size_t cols) = 0;
};

class LlamaForward {
 public:
  LlamaForward(const model::LoadedModel& model, const kv::KvLayout& layout, ThreadPool& pool);

  // tokens: the step's tokens, sequence after sequence (seqs[i].row is where sequence i starts);
  // their K/V are written into the cache. Writes the logits of the rows listed in `logit_rows`
  // to `logits` ([logit_rows.size()][vocab]).
  void run(const std::vector<int32_t>& tokens, const std::vector<ops::PagedSequence>& seqs,
           const std::vector<uint32_t>& logit_rows, float* logits);

  // Null (the default) observes nothing and costs one test per layer and point.
  void set_observer(ForwardObserver* observer) { observer_ = observer; }

 private:
  void observe(uint32_t layer, ForwardObserver::Point point, const float* x, size_t rows, size_t cols) {
    if (observer_ != nullptr) observer_->observe(layer, point, x, rows, cols);
  }

  const model::LoadedModel& model_;
  const kv::KvLayout& layout_;
  ThreadPool& pool_;
  ForwardObserver* observer_ = nullptr;
  std::vector<double> inv_freq_;
  // Activations, grown to the largest step seen and reused.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, last_;
};

}  // namespace fineserve::engine
