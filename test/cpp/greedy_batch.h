// Greedy decoding of several sequences in the same executor steps, stopping as the stories260K
// golden file does, for the tests that check the executor against those continuations
// (test_forward_golden.cc, test_shared_thread_pool.cc) so that both drive it the same way. Each
// test allocates the sequences' blocks itself, from its own slab.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/executor.h"

namespace fineserve::test {

// The golden file's stop tokens: generation ends at BOS or EOS, which is not kept.
constexpr int32_t kBos = 1, kEos = 2;

struct Seq {
  std::vector<int32_t> tokens;  // prompt, then generated
  size_t prompt_len = 0;
  size_t cached = 0;               // tokens already in the KV cache
  std::vector<kv::BlockId> blocks;  // filled by the caller: room for prompt_len + max_new tokens
  engine::SamplingParams params;    // greedy
  engine::SamplerState state;
  bool done = false;

  explicit Seq(std::vector<int32_t> prompt) : tokens(std::move(prompt)), prompt_len(tokens.size()) {}
  std::vector<int32_t> generated() const { return {tokens.begin() + static_cast<long>(prompt_len), tokens.end()}; }
};

// Runs all of `seqs` to completion in the same steps: each gets at most `chunk` pending tokens per
// step (prompts enter in chunks next to decoding sequences) and stops at BOS/EOS or after `max_new`
// generated tokens. Resets each sampler state from its prompt first. With `first_logits`, stores
// the first step's logits there. No doctest assertions: callers may run this on threads doctest
// does not guard.
inline void run_greedy(engine::Executor& exec, std::vector<Seq>& seqs, size_t max_new, uint32_t chunk,
                       std::vector<float>* first_logits = nullptr) {
  for (Seq& s : seqs) s.state.reset(exec.vocab_size(), s.tokens.data(), static_cast<uint32_t>(s.prompt_len));
  bool first = true;
  for (;;) {
    std::vector<engine::SequenceChunk> batch;
    std::vector<Seq*> owners;
    for (Seq& s : seqs) {
      if (s.done) continue;
      engine::SequenceChunk c;
      c.n_tokens = std::min(static_cast<uint32_t>(s.tokens.size() - s.cached), chunk);
      c.tokens = s.tokens.data() + s.cached;
      c.position = static_cast<uint32_t>(s.cached);
      c.block_table = s.blocks.data();
      c.n_blocks = static_cast<uint32_t>(s.blocks.size());
      c.sample = s.cached + c.n_tokens == s.tokens.size();
      c.sampling = &s.params;
      c.sampler_state = &s.state;
      batch.push_back(c);
      owners.push_back(&s);
    }
    if (batch.empty()) return;
    const bool want_logits = first && first_logits != nullptr;
    engine::StepOutput out = exec.step(batch, want_logits);
    if (want_logits) *first_logits = std::move(out.logits);
    first = false;
    for (size_t i = 0; i < batch.size(); ++i) {
      Seq& s = *owners[i];
      s.cached += batch[i].n_tokens;
      if (!batch[i].sample) continue;
      int32_t t = out.samples[i].token;
      if (t == kBos || t == kEos) {
        s.done = true;
        continue;
      }
      s.tokens.push_back(t);
      if (s.tokens.size() - s.prompt_len >= max_new) s.done = true;
    }
  }
}

}  // namespace fineserve::test
