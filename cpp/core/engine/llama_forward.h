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

class LlamaForward {
 public:
  LlamaForward(const model::LoadedModel& model, const kv::KvLayout& layout, ThreadPool& pool);

  // tokens: the step's tokens, sequence after sequence (seqs[i].row is where sequence i starts);
  // their K/V are written into the cache. Writes the logits of the rows listed in `logit_rows`
  // to `logits` ([logit_rows.size()][vocab]).
  void run(const std::vector<int32_t>& tokens, const std::vector<ops::PagedSequence>& seqs,
           const std::vector<uint32_t>& logit_rows, float* logits);

 private:
  const model::LoadedModel& model_;
  const kv::KvLayout& layout_;
  ThreadPool& pool_;
  std::vector<double> inv_freq_;
  // Activations, grown to the largest step seen and reused.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, last_;
};

}  // namespace fineserve::engine
