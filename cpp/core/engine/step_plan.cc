#include "engine/step_plan.h"

#include <exception>
#include <stdexcept>
#include <string>

namespace fineserve::engine {

StepPlan plan_step(const std::vector<SequenceChunk>& batch, uint32_t vocab_size, uint32_t max_context,
                   const kv::KvSlab& pool, kv::ModelId kv_model) {
  StepPlan plan;
  plan.seqs.resize(batch.size());
  const uint32_t tpb = pool.layout(kv_model).geometry.tokens_per_block;
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceChunk& ch = batch[i];
    auto bad = [&](const std::string& what) { throw std::invalid_argument("batch[" + std::to_string(i) + "]: " + what); };
    if (ch.n_tokens == 0 || ch.tokens == nullptr) bad("nTokens = 0: a chunk runs at least one token");
    const uint64_t end = static_cast<uint64_t>(ch.position) + ch.n_tokens;
    if (end > max_context) {
      bad("position " + std::to_string(ch.position) + " + " + std::to_string(ch.n_tokens) +
          " tokens exceeds the model's context of " + std::to_string(max_context));
    }
    if (static_cast<uint64_t>(ch.n_blocks) * tpb < end) {
      bad(std::to_string(ch.n_blocks) + " blocks hold " + std::to_string(uint64_t{ch.n_blocks} * tpb) +
          " tokens, fewer than the " + std::to_string(end) + " this chunk needs");
    }
    for (uint32_t t = 0; t < ch.n_tokens; ++t) {
      if (ch.tokens[t] < 0 || static_cast<uint32_t>(ch.tokens[t]) >= vocab_size) {
        bad("token " + std::to_string(ch.tokens[t]) + " is outside the vocabulary of " + std::to_string(vocab_size));
      }
    }
    if (ch.sample && (ch.sampling == nullptr || ch.sampler_state == nullptr)) bad("sample needs sampling params and state");
    if (ch.sample) {
      std::string err = validate(*ch.sampling);
      if (!err.empty()) bad(err);
      if (ch.sampler_state->output_counts.size() != vocab_size) {
        bad("the sampler state was not reset for this model's vocabulary (SamplerState::reset)");
      }
    }
    PlannedSequence& s = plan.seqs[i];
    s.position = ch.position;
    s.n_tokens = ch.n_tokens;
    s.row = static_cast<uint32_t>(plan.tokens.size());
    const uint32_t needed = static_cast<uint32_t>((end + tpb - 1) / tpb);
    s.block_offsets.reserve(needed);
    // block_offset throws KvError for an id that is not a live block of this model.
    for (uint32_t b = 0; b < needed; ++b) s.block_offsets.push_back(pool.block_offset(kv_model, ch.block_table[b]));
    plan.tokens.insert(plan.tokens.end(), ch.tokens, ch.tokens + ch.n_tokens);
    if (ch.sample) plan.logit_rows.push_back(s.row + ch.n_tokens - 1);
  }
  return plan;
}

StepOutput Executor::step(const std::vector<SequenceChunk>& batch, bool return_logits) {
  return run(plan(batch), batch, return_logits);
}

StepOutput sample_step(const std::vector<SequenceChunk>& batch, std::vector<float>& logits, uint32_t vocab,
                       bool return_logits, ThreadPool* pool) {
  StepOutput out;
  out.samples.resize(batch.size());
  std::vector<size_t> sampled;  // chunk index of each logits row
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].sample) sampled.push_back(i);
  }
  std::vector<std::exception_ptr> errors(sampled.size());
  auto draw = [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) {
      const SequenceChunk& ch = batch[sampled[r]];
      try {
        out.samples[sampled[r]] = sample(logits.data() + r * vocab, vocab, *ch.sampling, *ch.sampler_state);
      } catch (...) {
        errors[r] = std::current_exception();  // a pool thread must not throw
      }
    }
  };
  if (pool != nullptr && sampled.size() > 1) {
    pool->parallel_for(sampled.size(), draw);
  } else {
    draw(0, sampled.size());
  }
  for (size_t r = 0; r < sampled.size(); ++r) {
    if (!errors[r]) continue;
    // Take back the draws that succeeded, so a retried step draws the same tokens.
    for (size_t k = 0; k < sampled.size(); ++k) {
      if (!errors[k]) unrecord_sample(*batch[sampled[k]].sampler_state, out.samples[sampled[k]].token);
    }
    std::rethrow_exception(errors[r]);
  }
  if (return_logits) out.logits = logits;
  return out;
}

}  // namespace fineserve::engine
