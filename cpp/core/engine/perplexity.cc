#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/cpu_executor.h"
#include "engine/llama_forward.h"
#include "engine/thread_pool.h"
#include "kv/kv_slab.h"
#include "model/model_error.h"

namespace fineserve::engine {

double PerplexityResult::perplexity() const {
  return scored == 0 ? NAN : std::exp(nll_sum / static_cast<double>(scored));
}

namespace {

void check_input(const model::LlamaConfig& c, const std::vector<int32_t>& tokens, uint32_t chunk_tokens) {
  if (tokens.size() < 2) {
    throw std::invalid_argument("perplexity needs at least 2 tokens (the first only conditions); got " +
                                std::to_string(tokens.size()));
  }
  if (tokens.size() > c.max_context) {
    throw std::invalid_argument("perplexity: " + std::to_string(tokens.size()) +
                                " tokens exceed the model's context of " + std::to_string(c.max_context));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || static_cast<uint32_t>(tokens[i]) >= c.vocab_size) {
      throw std::invalid_argument("perplexity: tokens[" + std::to_string(i) + "] = " + std::to_string(tokens[i]) +
                                  " is outside the vocabulary of " + std::to_string(c.vocab_size));
    }
  }
  if (chunk_tokens == 0) throw std::invalid_argument("perplexity: chunk = 0: a chunk runs at least one token");
}

// -ln softmax(logits)[target], in double: the log-sum-exp with the maximum subtracted.
double nll(const float* logits, uint32_t vocab, int32_t target) {
  double mx = logits[0];
  for (uint32_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (uint32_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return mx + std::log(sum) - static_cast<double>(logits[target]);
}

}  // namespace

PerplexityResult perplexity(const model::LoadedModel& model, const std::vector<int32_t>& tokens, kv::KvFormat kv,
                            uint32_t threads, uint32_t chunk_tokens, const std::function<bool(double)>& on_progress) {
  const model::LlamaConfig& c = model.config;
  check_input(c, tokens, chunk_tokens);
  // The last token is only a target: tokens[0..n-2] run, row i predicting tokens[i + 1].
  const uint32_t run = static_cast<uint32_t>(tokens.size() - 1);

  // One slab holding exactly the sequence's blocks: the cache this evaluation needs and no more.
  const uint32_t tpb = 16;
  const kv::KvLayout layout = kv::make_layout(kv_geometry_for(c, kv, tpb));
  const uint32_t n_blocks = (run + tpb - 1) / tpb;
  const uint64_t bytes = static_cast<uint64_t>(n_blocks) * layout.block_bytes;  // 64-byte multiple
  kv::KvSlab pool(kv::KvSlabOptions{bytes, bytes, 0.125, "host"});
  kv::ModelId id = pool.add_model({"perplexity", layout.geometry, 0, 0});
  std::vector<kv::BlockId> ids;
  if (!pool.alloc(id, n_blocks, &ids).ok) throw std::logic_error("perplexity: the slab sized for the sequence is full");
  ops::PagedSequence seq;
  for (kv::BlockId b : ids) seq.blocks.push_back(pool.base() + pool.block_offset(id, b));

  ThreadPool workers(threads);
  LlamaForward forward(model, layout, workers);
  const uint32_t chunk = std::min(chunk_tokens, run), vocab = c.vocab_size;
  std::vector<float> logits(static_cast<size_t>(chunk) * vocab);
  std::vector<uint32_t> rows;
  PerplexityResult result;
  for (uint32_t pos = 0; pos < run; pos += chunk) {
    const uint32_t n = std::min(chunk, run - pos);
    std::vector<int32_t> step(tokens.begin() + pos, tokens.begin() + pos + n);
    seq.position = pos;
    seq.n_tokens = n;
    seq.row = 0;
    rows.resize(n);
    for (uint32_t r = 0; r < n; ++r) rows[r] = r;
    forward.run(step, {seq}, rows, logits.data());
    for (uint32_t r = 0; r < n; ++r) result.nll_sum += nll(logits.data() + static_cast<size_t>(r) * vocab, vocab, tokens[pos + r + 1]);
    result.scored += n;
    if (on_progress && !on_progress(static_cast<double>(pos + n) / run)) {
      throw model::ModelError(model::ModelErrc::Cancelled, "perplexity was cancelled after " +
                                                               std::to_string(pos + n) + " of " + std::to_string(run) +
                                                               " tokens");
    }
  }
  return result;
}

}  // namespace fineserve::engine
