// Perplexity of a token sequence under a model, with the KV cache in a chosen format: the number
// llama.cpp's `perplexity` tool and lm-eval report, here used to price a KV format's error (the
// same text scored through an f32 and a quantized cache).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kv/kv_format.h"
#include "model/loader.h"

namespace fineserve::engine {

struct PerplexityResult {
  double nll_sum = 0;   // sum of -ln p(token | prefix) over the scored tokens
  uint64_t scored = 0;  // tokens scored: all but the first
  double perplexity() const;  // exp(nll_sum / scored)
};

// Scores tokens[1..n-1], each given its whole prefix (tokens[0] only conditions), running
// tokens[0..n-2] through the forward pass `chunk_tokens` at a time over a host KV cache of format
// `kv`; log-softmax in double. `threads` as ThreadPool (0 = every usable core).
// Throws std::invalid_argument naming the value for fewer than 2 tokens, more tokens than the
// model's context, a token outside the vocabulary or chunk_tokens == 0. `on_progress` gets the
// fraction of tokens done after each chunk; returning false stops with
// model::ModelError(ModelErrc::Cancelled).
PerplexityResult perplexity(const model::LoadedModel& model, const std::vector<int32_t>& tokens, kv::KvFormat kv,
                            uint32_t threads, uint32_t chunk_tokens = 128,
                            const std::function<bool(double)>& on_progress = {});

}  // namespace fineserve::engine
