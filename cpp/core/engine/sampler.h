// Turning logits into the next token, per request. Deterministic for a seed: the random draw for
// the token at a given output index depends only on (seed, index), so a request samples the same
// tokens alone or in any batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fineserve::engine {

struct SamplingParams {
  float temperature = 0.0f;        // 0: greedy (argmax)
  uint32_t top_k = 0;              // 0: off
  float top_p = 1.0f;              // 1: off
  float min_p = 0.0f;              // 0: off; keeps tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f; // 1: off; over prompt and output tokens (CTRL / HF semantics)
  float presence_penalty = 0.0f;   // over output tokens (OpenAI semantics)
  float frequency_penalty = 0.0f;  // over output tokens, times their count
  uint64_t seed = 0;
  uint32_t logprobs = 0;           // how many top alternatives to return with each token (0: none)
};

// What a request's sampler remembers between steps.
struct SamplerState {
  std::vector<uint32_t> prompt_counts;  // per token id: occurrences in the prompt (for repetition)
  std::vector<uint32_t> output_counts;  // per token id: occurrences in the output so far
  uint64_t output_index = 0;            // tokens sampled so far
  // Sized to the vocabulary and seeded with the prompt's tokens.
  void reset(uint32_t vocab_size, const int32_t* prompt, uint32_t prompt_len);
};

struct TokenLogprob {
  int32_t token;
  float logprob;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;                   // of the chosen token, under the unmodified logits
  std::vector<TokenLogprob> top;          // params.logprobs best alternatives, best first
};

// Samples one token from `logits` (vocab_size floats, left unchanged), records it in `state`.
// Throws std::invalid_argument naming the field for out-of-range parameters.
SampleResult sample(const float* logits, uint32_t vocab_size, const SamplingParams& params,
                    SamplerState& state);

// True when sample() would return the argmax of the raw logits and only its log-probability:
// temperature 0, no penalty, no alternatives asked for. A backend may then pick the token where
// the logits are (the CUDA executor does, on the device) and call record_sample().
bool is_plain_greedy(const SamplingParams& params);

// Records a token chosen outside sample() in the state, as sample() records its own.
void record_sample(SamplerState& state, int32_t token);
// Takes back the last record_sample of `token` (a step that failed after sampling some rows).
void unrecord_sample(SamplerState& state, int32_t token);

// Empty when the parameters are usable; otherwise names the first bad field and its value.
std::string validate(const SamplingParams& params);

}  // namespace fineserve::engine
