// The executor's sequences: each one's sampling parameters and sampler state (penalty counts, RNG),
// registered once and referred to by id in every step. bind() turns one step's flat arrays into the
// SequenceChunks an Executor runs, pointing each sampling chunk at its sequence's state.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "engine/executor.h"
#include "engine/executor_error.h"
#include "engine/sampler.h"
#include "kv/kv_pool.h"

namespace fineserve::engine {

// One step as the scheduler packs it: per sequence i, n_tokens[i] tokens of `tokens` at
// positions[i], n_blocks[i] entries of `blocks`, and whether to sample after them.
struct StepArrays {
  std::vector<uint32_t> seq_ids, n_tokens, positions, n_blocks;
  std::vector<int32_t> tokens;
  std::vector<kv::BlockId> blocks;
  std::vector<uint8_t> sample;
};

class SequenceTable {
 public:
  // Registers sequence `id` with its prompt (the sampler's penalties count it) and the tokens it
  // already generated elsewhere (`output`: a request resumed on another replica continues its
  // sampler as if it had never moved: same penalties, same seeded draws). Throws ExecutorError:
  // SequenceExists for an id already here, SamplingInvalid naming the parameter, BatchInvalid for
  // an output token outside the vocabulary.
  void add(uint32_t id, const SamplingParams& params, const int32_t* prompt, uint32_t prompt_len, uint32_t vocab_size,
           const int32_t* output = nullptr, uint32_t output_len = 0);
  // False when `id` was not here.
  bool remove(uint32_t id);
  bool contains(uint32_t id) const { return sequences_.count(id) != 0; }
  size_t size() const { return sequences_.size(); }
  void clear() { sequences_.clear(); }

  // The chunks of `step`, pointing into its arrays (which must outlive them) and into this
  // table's entries (which must not be removed until the step has run). Throws ExecutorError:
  // BatchInvalid when the arrays disagree on the number of sequences or are shorter than
  // n_tokens / n_blocks say, SequenceUnknown for a sampling chunk of an id not added.
  std::vector<SequenceChunk> bind(const StepArrays& step);

 private:
  struct Entry {
    SamplingParams params;
    SamplerState state;
  };
  std::map<uint32_t, Entry> sequences_;  // node-based: bound pointers survive other adds and removes
};

}  // namespace fineserve::engine
