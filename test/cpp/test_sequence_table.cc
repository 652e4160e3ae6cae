// The executor's bookkeeping in cpp/core: the sequence table (sampling parameters and sampler state
// per sequence id, and binding a step's arrays to chunks) and the CPU-vs-CUDA backend choice.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "engine/kv_binding.h"
#include "engine/make_executor.h"
#include "engine/sequence_table.h"
#include "kv/kv_slab.h"
#include "model/loader.h"
#include "model_test_files.h"

using namespace fineserve;
using engine::ExecutorErrc;
using engine::ExecutorError;

namespace {

// The code a call throws, or nothing when it does not throw an ExecutorError.
template <typename F>
std::string code_of(F&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const ExecutorError& e) {
    if (message != nullptr) *message = e.what();
    switch (e.code()) {
      case ExecutorErrc::SequenceExists: return "exists";
      case ExecutorErrc::SequenceUnknown: return "unknown";
      case ExecutorErrc::SamplingInvalid: return "sampling";
      case ExecutorErrc::BatchInvalid: return "batch";
      case ExecutorErrc::BackendUnavailable: return "backend";
    }
  }
  return "";
}

const int32_t kPrompt[] = {1, 5, 5, 7};

// Two sequences: 10 (a prefill chunk of 3 tokens that samples) and 20 (a decode token that does not).
engine::StepArrays two_chunks() {
  engine::StepArrays s;
  s.seq_ids = {10, 20};
  s.tokens = {1, 5, 5, 9};
  s.n_tokens = {3, 1};
  s.positions = {0, 7};
  s.blocks = {4, 2, 3};
  s.n_blocks = {1, 2};
  s.sample = {1, 0};
  return s;
}

}  // namespace

TEST_CASE("SequenceTable: add, remove, a duplicate id, invalid sampling") {
  engine::SequenceTable t;
  engine::SamplingParams p;
  t.add(10, p, kPrompt, 4, 16);
  CHECK(t.contains(10));
  CHECK(t.size() == 1);
  std::string message;
  CHECK(code_of([&] { t.add(10, p, kPrompt, 4, 16); }, &message) == "exists");
  CHECK(message == "sequence 10 was already added");
  CHECK(t.remove(10));
  CHECK_FALSE(t.remove(10));
  CHECK_FALSE(t.contains(10));
  // An id may be added again once removed.
  t.add(10, p, kPrompt, 4, 16);
  CHECK(t.size() == 1);

  p.temperature = -1;
  CHECK(code_of([&] { t.add(11, p, kPrompt, 4, 16); }, &message) == "sampling");
  CHECK(message.find("temperature") != std::string::npos);
  CHECK_FALSE(t.contains(11));
  CHECK(std::strcmp(engine::errc_code(ExecutorErrc::SamplingInvalid), "ERR_SAMPLING_INVALID") == 0);
  CHECK(std::strcmp(engine::errc_code(ExecutorErrc::SequenceUnknown), "ERR_EXECUTOR_INVALID") == 0);
}

TEST_CASE("SequenceTable: bind points chunks into the arrays and sampling chunks at their sequence") {
  engine::SequenceTable t;
  engine::SamplingParams p;
  p.temperature = 0.5f;
  p.seed = 42;
  t.add(10, p, kPrompt, 4, 16);
  engine::StepArrays s = two_chunks();
  std::vector<engine::SequenceChunk> batch = t.bind(s);
  REQUIRE(batch.size() == 2);
  CHECK(batch[0].tokens == s.tokens.data());
  CHECK(batch[0].n_tokens == 3);
  CHECK(batch[0].position == 0);
  CHECK(batch[0].block_table == s.blocks.data());
  CHECK(batch[0].n_blocks == 1);
  CHECK(batch[0].sample);
  REQUIRE(batch[0].sampling != nullptr);
  CHECK(batch[0].sampling->seed == 42);
  REQUIRE(batch[0].sampler_state != nullptr);
  CHECK(batch[0].sampler_state->prompt_counts.size() == 16);
  CHECK(batch[0].sampler_state->prompt_counts[5] == 2);
  // Sequence 20 was never added, which is fine for a chunk that does not sample.
  CHECK(batch[1].tokens == s.tokens.data() + 3);
  CHECK(batch[1].block_table == s.blocks.data() + 1);
  CHECK(batch[1].n_blocks == 2);
  CHECK(batch[1].position == 7);
  CHECK_FALSE(batch[1].sample);
  CHECK(batch[1].sampling == nullptr);
  CHECK(batch[1].sampler_state == nullptr);
  // The state is the table's own, so it carries across steps, and other adds and removes leave it.
  engine::SamplerState* state = batch[0].sampler_state;
  t.add(30, p, kPrompt, 4, 16);
  t.remove(30);
  CHECK(t.bind(s)[0].sampler_state == state);
}

TEST_CASE("SequenceTable: bind refuses an unknown sequence and arrays that disagree") {
  engine::SequenceTable t;
  t.add(10, {}, kPrompt, 4, 16);
  engine::StepArrays s = two_chunks();
  s.sample = {1, 1};
  std::string message;
  CHECK(code_of([&] { t.bind(s); }, &message) == "unknown");
  CHECK(message == "sequence 20 was not added");
  t.remove(10);
  s = two_chunks();
  CHECK(code_of([&] { t.bind(s); }) == "unknown");

  t.add(10, {}, kPrompt, 4, 16);
  s = two_chunks();
  s.positions.pop_back();
  CHECK(code_of([&] { t.bind(s); }, &message) == "batch");
  CHECK(message == "step arrays disagree on the number of sequences");
  s = two_chunks();
  s.n_tokens[1] = 2;  // 5 tokens named, 4 given
  CHECK(code_of([&] { t.bind(s); }, &message) == "batch");
  CHECK(message == "step arrays are shorter than nTokens / nBlocks say");
  s = two_chunks();
  s.n_blocks[0] = 3;
  CHECK(code_of([&] { t.bind(s); }) == "batch");
  CHECK(t.bind(engine::StepArrays{}).empty());
}

TEST_CASE("choose_backend: host memory is the CPU, cuda:N the CUDA backend, refused without it") {
  for (bool compiled : {false, true}) {
    CHECK(engine::choose_backend("host", compiled).backend == engine::Backend::Cpu);
    CHECK(engine::choose_backend("none", compiled).backend == engine::Backend::Cpu);
  }
  engine::BackendChoice gpu = engine::choose_backend("cuda:1", true);
  CHECK(gpu.backend == engine::Backend::Cuda);
  CHECK(gpu.device == 1);
  std::string message;
  CHECK(code_of([&] { engine::choose_backend("cuda:0", false); }, &message) == "backend");
  CHECK(message == "memory = \"cuda:0\": this addon was built without CUDA");
  CHECK(std::strcmp(engine::errc_code(ExecutorErrc::BackendUnavailable), "ERR_EXECUTOR_INVALID") == 0);
}

TEST_CASE("make_executor: a host-memory slab gets the CPU executor") {
  std::unique_ptr<model::LoadedModel> m = model::load_model(model::testing::require_fixture("stories260K.gguf").string());
  kv::KvSlab slab(kv::KvSlabOptions{4ull << 20, 1ull << 20, 0.125, "host"});
  kv::ModelId id = slab.add_model({"m", engine::kv_geometry_for(m->config, kv::KvFormat::F32, 16), 0, 0});
  std::unique_ptr<engine::Executor> exec = engine::make_executor(*m, slab, id, {kv::KvFormat::F32, 1, nullptr});
  REQUIRE(exec != nullptr);
  CHECK(exec->vocab_size() == m->config.vocab_size);
}

TEST_CASE("SequenceTable: a sequence resumed with its output continues its sampler where it was") {
  engine::SequenceTable moved;
  engine::SequenceTable stayed;
  engine::SamplingParams p;
  p.temperature = 0.8f;
  p.frequency_penalty = 0.5f;
  p.seed = 7;
  const int32_t output[] = {3, 5, 3};
  moved.add(10, p, kPrompt, 4, 16, output, 3);
  stayed.add(10, p, kPrompt, 4, 16);
  engine::StepArrays s = two_chunks();
  engine::SamplerState* a = moved.bind(s)[0].sampler_state;
  engine::SamplerState* b = stayed.bind(s)[0].sampler_state;
  for (int32_t t : output) engine::record_sample(*b, t);
  CHECK(a->output_index == 3);
  CHECK(a->output_counts == b->output_counts);
  CHECK(a->prompt_counts == b->prompt_counts);
  std::string message;
  const int32_t bad[] = {3, 16};
  CHECK(code_of([&] { moved.add(11, p, kPrompt, 4, 16, bad, 2); }, &message) == "batch");
  CHECK(message == "output token 1 of sequence 11 is 16, outside the vocabulary of 16");
  CHECK_FALSE(moved.contains(11));
}
