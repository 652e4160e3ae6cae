// A step's batch checked and flattened, backend-neutral: every executor (CPU, CUDA) validates the
// whole batch through here before anything is written, so a bad chunk leaves every cache untouched
// and both backends refuse the same batches with the same messages.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/executor.h"
#include "engine/thread_pool.h"
#include "kv/kv_slab.h"

namespace fineserve::engine {

struct PlannedSequence {
  uint32_t row = 0;       // its first token's index in StepPlan::tokens
  uint32_t position = 0;  // tokens already cached
  uint32_t n_tokens = 0;
  std::vector<uint64_t> block_offsets;  // byte offsets from the slab base of the blocks it uses now
};

struct StepPlan {
  std::vector<int32_t> tokens;         // every chunk's tokens, chunk after chunk
  std::vector<PlannedSequence> seqs;   // one per chunk
  std::vector<uint32_t> logit_rows;    // the last row of each sampling chunk, in chunk order
};

// Throws std::invalid_argument "batch[i]: ..." naming the chunk and field for a malformed chunk
// (no tokens, past the context, too few blocks, a token outside the vocabulary, sampling without
// params/state or with bad params), and KvError for a block id that is not a live block of
// `kv_model`.
StepPlan plan_step(const std::vector<SequenceChunk>& batch, uint32_t vocab_size, uint32_t max_context,
                   const kv::KvSlab& pool, kv::ModelId kv_model);

// Samples every sampling chunk of `batch` on the host from `logits` (one row of vocab_size per
// sampling chunk, in chunk order), and hands the logits back when asked. With a pool, the rows are
// sampled on its threads (each draw depends only on its own row, params and state, so the tokens
// are the same). All or nothing: when a row cannot be sampled, the first such error in chunk order
// is thrown and no sampler state has advanced.
StepOutput sample_step(const std::vector<SequenceChunk>& batch, std::vector<float>& logits, uint32_t vocab_size,
                       bool return_logits, ThreadPool* pool = nullptr);

}  // namespace fineserve::engine
