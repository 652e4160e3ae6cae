// The CPU executor on the real stories260K model, from the GGUF and from the HF folder, against the
// golden greedy continuations and top-5 logits in ../shared/fixtures/stories260K/golden-greedy.json
// (made by an independent numpy port of llama2.c). One thread, as the project does for this model.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "engine/cpu_executor.h"
#include "kv/kv_slab.h"
#include "model/json.h"
#include "model/loader.h"
#include "golden_cases.h"
#include "greedy_batch.h"
#include "model_test_files.h"

using namespace fineserve;

namespace {

using model::testing::GoldenCase;
using model::testing::golden_cases;
using test::Seq;

// A model, a host-memory slab and an executor, with helpers to run sequences to completion.
struct Rig {
  std::unique_ptr<model::LoadedModel> model;
  kv::KvSlab pool{kv::KvSlabOptions{16ull << 20, 1ull << 20, 0.125, "host"}};
  kv::ModelId kv_model;
  std::unique_ptr<engine::Executor> exec;

  Rig(const std::string& source, kv::KvFormat format, uint32_t threads = 1) {
    model = model::load_model(source);
    kv_model = pool.add_model({"m", engine::kv_geometry_for(model->config, format, 16), 0, 0});
    exec = engine::make_cpu_executor(*model, pool, kv_model, {format, threads, nullptr});
  }

  std::vector<kv::BlockId> blocks_for(size_t tokens) {
    std::vector<kv::BlockId> ids;
    REQUIRE(pool.alloc(kv_model, static_cast<uint32_t>((tokens + 15) / 16), &ids).ok);
    return ids;
  }
};

// Greedy decoding to `max_new` tokens, `chunk` prompt tokens per step at most, all sequences in
// the same steps (greedy_batch.h), with each sequence's blocks from the rig's slab.
void run(Rig& rig, std::vector<Seq>& seqs, size_t max_new, uint32_t chunk, std::vector<float>* first_logits) {
  for (Seq& s : seqs) s.blocks = rig.blocks_for(s.prompt_len + max_new);
  test::run_greedy(*rig.exec, seqs, max_new, chunk, first_logits);
}

std::vector<std::string> sources() {
  return {model::testing::require_fixture("stories260K.gguf").string(), model::testing::require_fixture("hf").string()};
}

}  // namespace

TEST_CASE("stories260K: greedy ids and top-5 logits equal the golden file, from GGUF and HF") {
  std::vector<GoldenCase> cases = golden_cases();
  for (const std::string& source : sources()) {
    CAPTURE(source);
    Rig rig(source, kv::KvFormat::F32);
    for (size_t ci = 0; ci < cases.size(); ++ci) {
      CAPTURE(ci);
      std::vector<Seq> seqs{Seq(cases[ci].prompt)};
      std::vector<float> logits;
      run(rig, seqs, 64, 1024, &logits);
      REQUIRE(logits.size() == rig.exec->vocab_size());
      for (auto [id, want] : cases[ci].top5) {
        CHECK(std::fabs(logits[id] - want) <= 1e-4 * std::fabs(want) + 1e-5);
      }
      CHECK(seqs[0].generated() == cases[ci].greedy);
      rig.pool.free(rig.kv_model, seqs[0].blocks.data(), seqs[0].blocks.size());
    }
  }
}

TEST_CASE("stories260K: a sequence gives the same ids alone, batched, and with chunked prefill") {
  std::vector<GoldenCase> cases = golden_cases();
  // All four in the same steps, prompts entering a few tokens at a time next to decoding
  // sequences; and again on two threads, which must not change a single id either.
  for (auto [threads, chunk] : {std::pair<uint32_t, uint32_t>{1, 2}, {2, 3}}) {
    CAPTURE(threads);
    Rig rig(sources()[0], kv::KvFormat::F32, threads);
    std::vector<Seq> all;
    for (const GoldenCase& g : cases) all.emplace_back(g.prompt);
    run(rig, all, 64, chunk, nullptr);
    for (size_t ci = 0; ci < cases.size(); ++ci) {
      CAPTURE(ci);
      CHECK(all[ci].generated() == cases[ci].greedy);
    }
  }
}

TEST_CASE("stories260K: f16 and bf16 KV caches stay within their rounding of the f32 logits") {
  std::vector<GoldenCase> cases = golden_cases();
  for (kv::KvFormat f : {kv::KvFormat::F16, kv::KvFormat::BF16}) {
    CAPTURE(kv::format_name(f));
    Rig rig(sources()[1], f);
    for (const GoldenCase& g : cases) {
      std::vector<Seq> seqs{Seq(g.prompt)};
      std::vector<float> logits;
      run(rig, seqs, 8, 1024, &logits);
      double bound = f == kv::KvFormat::F16 ? 2e-3 : 2e-2;  // relative steps 2^-11 and 2^-8
      for (auto [id, want] : g.top5) CHECK(std::fabs(logits[id] - want) <= bound * std::fabs(want) + 1e-3);
      // The argmax survives: the top logit leads the next by far more than the rounding.
      CHECK(seqs[0].generated().front() == g.greedy.front());
      rig.pool.free(rig.kv_model, seqs[0].blocks.data(), seqs[0].blocks.size());
    }
  }
}

TEST_CASE("a malformed step is refused whole and leaves the cache usable") {
  std::vector<GoldenCase> cases = golden_cases();
  Rig rig(sources()[0], kv::KvFormat::F32);
  std::vector<kv::BlockId> blocks = rig.blocks_for(32);
  engine::SamplingParams greedy;
  engine::SamplerState state;
  state.reset(512, nullptr, 0);
  std::vector<int32_t> toks(20, 5);
  auto chunk = [&](uint32_t n, uint32_t pos, uint32_t nb) {
    engine::SequenceChunk c;
    c.tokens = toks.data();
    c.n_tokens = n;
    c.position = pos;
    c.block_table = blocks.data();
    c.n_blocks = nb;
    c.sampling = &greedy;
    c.sampler_state = &state;
    return c;
  };
  CHECK_THROWS_WITH_AS(rig.exec->step({chunk(20, 0, 1)}, false), doctest::Contains("blocks hold 16 tokens"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(rig.exec->step({chunk(1, 2048, 2)}, false), doctest::Contains("exceeds the model's context"),
                       std::invalid_argument);
  toks[3] = 512;
  CHECK_THROWS_WITH_AS(rig.exec->step({chunk(4, 0, 1)}, false), doctest::Contains("outside the vocabulary"),
                       std::invalid_argument);
  toks[3] = 5;
  std::vector<kv::BlockId> foreign = {blocks[0] + 1, blocks[1]};
  engine::SequenceChunk bad = chunk(2, 0, 2);
  bad.block_table = foreign.data();
  CHECK_THROWS_AS(rig.exec->step({bad}, false), kv::KvError);
  rig.pool.free(rig.kv_model, blocks.data(), blocks.size());
  // Still correct afterwards.
  std::vector<Seq> seqs{Seq(cases[1].prompt)};
  run(rig, seqs, 64, 1024, nullptr);
  CHECK(seqs[0].generated() == cases[1].greedy);
}
