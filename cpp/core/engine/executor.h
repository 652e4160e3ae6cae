// The batch executor: one forward step of one model over a batch that mixes prefill chunks and
// decode tokens of many sequences, reading and writing K/V through block tables into a KV Slab,
// then sampling. This is the seam between the scheduler and a backend: the CPU executor
// implements it here, the CUDA backend implements the same interface.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/sampler.h"
#include "kv/kv_pool.h"

namespace fineserve::engine {

// One sequence's part of a step.
struct SequenceChunk {
  const int32_t* tokens = nullptr;  // the tokens to run now: a prefill chunk, or 1 for decode
  uint32_t n_tokens = 0;
  uint32_t position = 0;            // tokens of this sequence already in the KV cache
  // Blocks holding positions [0, position + n_tokens); entry i covers tokens
  // [i * tokens_per_block, (i + 1) * tokens_per_block).
  const kv::BlockId* block_table = nullptr;
  uint32_t n_blocks = 0;
  // Sample a token after the last one (false for a prefill chunk that is not the prompt's last).
  bool sample = true;
  const SamplingParams* sampling = nullptr;  // required when sample
  SamplerState* sampler_state = nullptr;     // required when sample
};

struct StepOutput {
  // Per chunk: the sampled result, or token -1 where sample was false.
  std::vector<SampleResult> samples;
  // When requested: the logits of each sampling chunk's last position, vocab floats each, in
  // chunk order (chunks with sample == false contribute none).
  std::vector<float> logits;
};

struct StepPlan;  // engine/step_plan.h

class Executor {
 public:
  virtual ~Executor() = default;
  // Checks the batch and resolves its block ids against the slab. It reads the slab's bookkeeping,
  // so it runs on the thread that allocates and frees (the scheduler's); run() then touches only
  // the memory the plan names, so it may run on a worker while other models allocate. Throws
  // std::invalid_argument naming the chunk and field for a malformed batch (position past the
  // model's context, too few blocks for position + n_tokens, a token outside the vocabulary), and
  // KvError for a block id that is not this model's.
  virtual StepPlan plan(const std::vector<SequenceChunk>& batch) const = 0;
  // Runs a planned step of `batch` (the same chunks plan() saw): the forward pass, writing K/V
  // into the planned blocks, then sampling.
  virtual StepOutput run(const StepPlan& plan, const std::vector<SequenceChunk>& batch, bool return_logits) = 0;
  // plan() then run(), on one thread; nothing is written to the KV cache when plan() throws.
  StepOutput step(const std::vector<SequenceChunk>& batch, bool return_logits);
  virtual uint32_t vocab_size() const = 0;
  virtual uint32_t max_context() const = 0;
};

}  // namespace fineserve::engine
