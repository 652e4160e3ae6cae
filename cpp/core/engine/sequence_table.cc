#include "engine/sequence_table.h"

#include <string>
#include <utility>

namespace fineserve::engine {

void SequenceTable::add(uint32_t id, const SamplingParams& params, const int32_t* prompt, uint32_t prompt_len,
                        uint32_t vocab_size, const int32_t* output, uint32_t output_len) {
  if (contains(id)) throw ExecutorError(ExecutorErrc::SequenceExists, "sequence " + std::to_string(id) + " was already added");
  std::string err = validate(params);
  if (!err.empty()) throw ExecutorError(ExecutorErrc::SamplingInvalid, err);
  Entry e;
  e.params = params;
  e.state.reset(vocab_size, prompt, prompt_len);
  for (uint32_t j = 0; j < output_len; ++j) {
    if (output[j] < 0 || static_cast<uint32_t>(output[j]) >= vocab_size) {
      throw ExecutorError(ExecutorErrc::BatchInvalid, "output token " + std::to_string(j) + " of sequence " + std::to_string(id) + " is " +
                                                          std::to_string(output[j]) + ", outside the vocabulary of " + std::to_string(vocab_size));
    }
    record_sample(e.state, output[j]);
  }
  sequences_.emplace(id, std::move(e));
}

bool SequenceTable::remove(uint32_t id) { return sequences_.erase(id) != 0; }

std::vector<SequenceChunk> SequenceTable::bind(const StepArrays& step) {
  const size_t n = step.seq_ids.size();
  if (step.n_tokens.size() != n || step.positions.size() != n || step.n_blocks.size() != n || step.sample.size() != n) {
    throw ExecutorError(ExecutorErrc::BatchInvalid, "step arrays disagree on the number of sequences");
  }
  std::vector<SequenceChunk> batch(n);
  size_t token_at = 0, block_at = 0;
  for (size_t i = 0; i < n; ++i) {
    if (token_at + step.n_tokens[i] > step.tokens.size() || block_at + step.n_blocks[i] > step.blocks.size()) {
      throw ExecutorError(ExecutorErrc::BatchInvalid, "step arrays are shorter than nTokens / nBlocks say");
    }
    SequenceChunk& c = batch[i];
    c.tokens = step.tokens.data() + token_at;
    c.n_tokens = step.n_tokens[i];
    c.position = step.positions[i];
    c.block_table = step.blocks.data() + block_at;
    c.n_blocks = step.n_blocks[i];
    c.sample = step.sample[i] != 0;
    if (c.sample) {
      auto it = sequences_.find(step.seq_ids[i]);
      if (it == sequences_.end()) {
        throw ExecutorError(ExecutorErrc::SequenceUnknown, "sequence " + std::to_string(step.seq_ids[i]) + " was not added");
      }
      c.sampling = &it->second.params;
      c.sampler_state = &it->second.state;
    }
    token_at += step.n_tokens[i];
    block_at += step.n_blocks[i];
  }
  return batch;
}

}  // namespace fineserve::engine
