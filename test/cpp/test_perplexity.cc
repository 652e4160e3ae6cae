// engine::perplexity on the real stories260K model (GGUF, F32 weights), scoring each golden case's
// prompt followed by its golden greedy continuation: against a float64 per-token NLL from the
// naive reference forward (reference_llama.h), across chunk sizes, and per KV format against the
// f32 cache. Also the CPU executor in every KV format, and the input errors and cancellation.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu_executor.h"
#include "engine/perplexity.h"
#include "kv/kv_slab.h"
#include "model/json.h"
#include "model/loader.h"
#include "model/model_error.h"
#include "model_test_files.h"
#include "reference_llama.h"

using namespace fineserve;
using kv::KvFormat;

namespace {

// prompt_ids + greedy_ids of every case of golden-greedy.json.
std::vector<std::vector<int32_t>> golden_sequences() {
  auto path = model::testing::require_fixture("golden-greedy.json");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  model::json::Value doc = model::json::parse(text.str(), path.string());
  std::vector<std::vector<int32_t>> out;
  for (const model::json::Value& c : doc.find("cases")->items()) {
    std::vector<int32_t> seq;
    for (const auto& v : c.find("prompt_ids")->items()) seq.push_back(static_cast<int32_t>(*v.as_int64()));
    for (const auto& v : c.find("greedy_ids")->items()) seq.push_back(static_cast<int32_t>(*v.as_int64()));
    out.push_back(seq);
  }
  REQUIRE(out.size() == 4);
  return out;
}

std::unique_ptr<model::LoadedModel> stories() {
  return model::load_model(model::testing::require_fixture("stories260K.gguf").string());
}

// Sum over positions 1..n-1 of -ln softmax(logits of the prefix)[token], all in double.
double reference_nll(const model::LoadedModel& m, const std::vector<int32_t>& seq) {
  std::vector<int32_t> inputs(seq.begin(), seq.end() - 1);
  reference::Rows logits = reference::forward(m.config, m.weights, inputs, true);
  double sum = 0;
  for (size_t r = 0; r < logits.size(); ++r) {
    double mx = *std::max_element(logits[r].begin(), logits[r].end()), z = 0;
    for (double l : logits[r]) z += std::exp(l - mx);
    sum += mx + std::log(z) - logits[r][seq[r + 1]];
  }
  return sum;
}

}  // namespace

TEST_CASE("perplexity: stories260K NLL equals the float64 reference, whatever the chunk size") {
  auto m = stories();
  for (const std::vector<int32_t>& seq : golden_sequences()) {
    CAPTURE(seq.size());
    const double want = reference_nll(*m, seq);
    engine::PerplexityResult r = engine::perplexity(*m, seq, KvFormat::F32, 1, 128);
    CHECK(r.scored == seq.size() - 1);
    // The f32 forward against the float64 one: the executor's logits match the golden ones to
    // ~1e-5 relative (test_forward_golden.cc); a sum of ~70 NLLs of that accuracy stays within
    // 1e-5 of its own size.
    CHECK(std::fabs(r.nll_sum - want) <= 1e-5 * want);
    CHECK(r.perplexity() == doctest::Approx(std::exp(want / static_cast<double>(seq.size() - 1))).epsilon(1e-5));
    // Chunks of 1 and 7 run the same rows through the same kernels; only the cache is filled in a
    // different number of steps, which must not change any value beyond float noise.
    for (uint32_t chunk : {1u, 7u}) {
      CAPTURE(chunk);
      engine::PerplexityResult c = engine::perplexity(*m, seq, KvFormat::F32, 1, chunk);
      CHECK(c.scored == r.scored);
      CHECK(std::fabs(c.nll_sum - r.nll_sum) <= 1e-6 * r.nll_sum);
    }
  }
}

TEST_CASE("perplexity: quantized KV caches stay within stated distances of the f32 cache") {
  auto m = stories();
  std::vector<std::vector<int32_t>> seqs = golden_sequences();
  auto total_ppl = [&](KvFormat f) {
    double nll = 0;
    uint64_t scored = 0;
    for (const std::vector<int32_t>& seq : seqs) {
      engine::PerplexityResult r = engine::perplexity(*m, seq, f, 1, 32);
      nll += r.nll_sum;
      scored += r.scored;
    }
    return std::exp(nll / static_cast<double>(scored));
  };
  const double base = total_ppl(KvFormat::F32);
  MESSAGE("stories260K golden sequences, f32 KV perplexity " << base);
  // Bounds: f16/bf16 round each K/V element by 2^-11 / 2^-8 relative, far below int8's
  // amax/254 per element; int8's limit is the project's acceptance figure (0.5 %). fp8: K coded
  // against a per-block per-channel reference (kv_format.h) costs about +0.1 % here; 1 % is the
  // issue's +1.5 % with margin.
  // int4: stories260K's K channels sit at very different offsets, so one symmetric scale per
  // token x head (the earlier layout) cost +170 % here (1.745 -> 4.753); K per channel over each
  // block, asymmetric (kv_format.h), costs about +0.1 %; 1 % is the issue's +3 % with margin.
  struct Limit {
    KvFormat f;
    double percent;
  };
  for (Limit l : {Limit{KvFormat::F16, 0.1}, Limit{KvFormat::BF16, 0.5}, Limit{KvFormat::Int8, 0.5},
                  Limit{KvFormat::Fp8E4M3, 1.0}, Limit{KvFormat::Int4, 1.0}}) {
    const std::string name = kv::format_name(l.f);
    CAPTURE(name);
    const double ppl = total_ppl(l.f);
    const double change = 100.0 * (ppl - base) / base;
    MESSAGE(name << " KV perplexity " << ppl << " (" << std::string(change >= 0 ? "+" : "") << change
                                 << " % vs f32, limit " << l.percent << " %)");
    CHECK(std::fabs(change) <= l.percent);
  }
}

TEST_CASE("perplexity: bad input is refused with the lengths or the token named; cancellation stops it") {
  auto m = stories();
  auto message_of = [&](const std::vector<int32_t>& tokens, uint32_t chunk = 128) {
    try {
      engine::perplexity(*m, tokens, KvFormat::F16, 1, chunk);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message_of({5}).find("at least 2 tokens") != std::string::npos);
  CHECK(message_of({}).find("got 0") != std::string::npos);
  CHECK(message_of({5, 512, 6}).find("tokens[1] = 512 is outside the vocabulary of 512") != std::string::npos);
  CHECK(message_of({5, -1}).find("tokens[1] = -1") != std::string::npos);
  std::vector<int32_t> too_long(m->config.max_context + 1, 5);
  CHECK(message_of(too_long).find(std::to_string(too_long.size()) + " tokens exceed the model's context of " +
                                  std::to_string(m->config.max_context)) != std::string::npos);
  CHECK(message_of({5, 6}, 0).find("chunk = 0") != std::string::npos);

  std::vector<int32_t> seq = golden_sequences()[0];
  std::vector<double> seen;
  engine::perplexity(*m, seq, KvFormat::Int8, 1, 16, [&](double f) {
    seen.push_back(f);
    return true;
  });
  REQUIRE(!seen.empty());
  CHECK(std::is_sorted(seen.begin(), seen.end()));
  CHECK(seen.back() == 1.0);
  CHECK(seen.size() == (seq.size() - 1 + 15) / 16);

  int calls = 0;
  try {
    engine::perplexity(*m, seq, KvFormat::F32, 1, 8, [&](double) { return ++calls < 2; });
    FAIL("not cancelled");
  } catch (const model::ModelError& e) {
    CHECK(e.code() == model::ModelErrc::Cancelled);
    CHECK(std::string(e.what()).find("cancelled") != std::string::npos);
  }
  CHECK(calls == 2);
}

TEST_CASE("the CPU executor runs every KV format and refuses a registered geometry without its scales") {
  auto m = stories();
  std::vector<int32_t> seq = golden_sequences()[0];
  engine::SamplingParams greedy;
  std::vector<float> f32_logits;
  int32_t f32_token = -1;
  for (KvFormat f : kv::kAllKvFormats) {
    const std::string name = kv::format_name(f);
    CAPTURE(name);
    kv::KvSlab pool(kv::KvSlabOptions{4ull << 20, 1ull << 20, 0.125, "host"});
    kv::KvGeometry g = engine::kv_geometry_for(m->config, f, 16);
    CHECK(g.scale_bytes == kv::default_scale_bytes(f));
    kv::ModelId id = pool.add_model({"m", g, 0, 0});
    auto exec = engine::make_cpu_executor(*m, pool, id, {f, 1, nullptr});
    std::vector<kv::BlockId> blocks;
    REQUIRE(pool.alloc(id, 8, &blocks).ok);
    engine::SamplerState state;
    state.reset(m->config.vocab_size, seq.data(), static_cast<uint32_t>(seq.size()));
    engine::SequenceChunk c;
    c.tokens = seq.data();
    c.n_tokens = static_cast<uint32_t>(seq.size());
    c.block_table = blocks.data();
    c.n_blocks = static_cast<uint32_t>(blocks.size());
    c.sampling = &greedy;
    c.sampler_state = &state;
    engine::StepOutput out = exec->step({c}, true);
    REQUIRE(out.logits.size() == m->config.vocab_size);
    if (f == KvFormat::F32) {
      f32_logits = out.logits;
      f32_token = out.samples[0].token;
    }
    double worst = 0;
    for (size_t i = 0; i < out.logits.size(); ++i) worst = std::max(worst, std::fabs(double(out.logits[i]) - f32_logits[i]));
    MESSAGE(name << ": max |logit - f32 logit| " << worst << ", greedy token " << out.samples[0].token);
    // The greedy token survives every format but int4, whose cost on this model is discussed in
    // the perplexity test above.
    if (f != KvFormat::Int4) CHECK(out.samples[0].token == f32_token);
  }
  for (KvFormat f : {KvFormat::Int8, KvFormat::Int4}) {
    kv::KvSlab pool(kv::KvSlabOptions{4ull << 20, 1ull << 20, 0.125, "host"});
    kv::KvGeometry g = engine::kv_geometry_for(m->config, f, 16);
    g.scale_bytes = 0;
    kv::ModelId id = pool.add_model({"m", g, 0, 0});
    CHECK_THROWS_WITH_AS(engine::make_cpu_executor(*m, pool, id, {f, 1, nullptr}), doctest::Contains("scaleBytes 0"),
                         std::invalid_argument);
  }
}
