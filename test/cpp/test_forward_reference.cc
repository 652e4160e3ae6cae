// The CPU executor against the float64 reference (reference_llama.h) on generated models of real
// shapes (real hidden sizes, head_dim 64 and 128, GQA, Qwen2 biases, Llama 3 RoPE scaling) with
// few layers and a reduced vocabulary: in both file formats, all three weight types and KV
// formats, and run as one prefill chunk, as two chunks, and token by token.
// The reference itself is first checked against the stories260K golden logits.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "engine/cpu_executor.h"
#include "kv/kv_slab.h"
#include "model/generate.h"
#include "model/json.h"
#include "model/loader.h"
#include "executor_harness.h"
#include "reference_llama.h"

using namespace fineserve;
namespace fs = std::filesystem;
using Rows = reference::Rows;
using test::Mode;
using test::mode_name;
using test::run_executor;

namespace {

// ---- fixtures ------------------------------------------------------------------------------

// <repo>/../shared/fixtures, where the project keeps real models (FINESERVE_FIXTURES overrides).
fs::path fixtures_dir() {
  if (const char* env = std::getenv("FINESERVE_FIXTURES")) return env;
  return fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path() / "shared" / "fixtures";
}

// Generated models of one test case, removed with it.
class ModelCache {
 public:
  ~ModelCache() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  const model::LoadedModel& get(const std::string& shape, uint32_t layers, uint32_t vocab, model::DType dtype,
                                const std::string& format) {
    std::string key = shape + "-" + std::to_string(layers) + "-" + std::to_string(vocab) + "-" +
                      model::dtype_name(dtype) + "." + format;
    auto it = models_.find(key);
    if (it != models_.end()) return *it->second;
    if (dir_.empty()) {
      dir_ = fs::temp_directory_path() / ("fineserve-fwdref-" + std::to_string(getpid()));
      fs::create_directories(dir_);
    }
    model::GenerateOptions o;
    o.shape = shape;
    o.layers = layers;
    o.vocab = vocab;
    o.dtype = dtype;
    o.format = format;
    o.seed = 2024;
    o.out = (dir_ / key).string();
    model::generate_model(o);
    return *(models_[key] = model::load_model(o.out));
  }

 private:
  fs::path dir_;
  std::map<std::string, std::unique_ptr<model::LoadedModel>> models_;
};

std::vector<int32_t> prompt(uint32_t n, uint32_t vocab, uint32_t salt) {
  std::vector<int32_t> t(n);
  uint64_t s = 0x9e3779b97f4a7c15ull * (salt + 1);
  for (uint32_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t[i] = static_cast<int32_t>(3 + (s >> 33) % (vocab - 3));
  }
  return t;
}

// ||a - b||_inf / ||b||_inf
double rel_error(const std::vector<float>& a, const std::vector<double>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return diff / scale;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

struct Run {
  model::DType dtype;
  std::string format;
  kv::KvFormat kv;
  std::vector<Mode> modes;
};

// One shape: per weight type, the model is generated (in each format asked for) and the reference
// computed once, from whichever format comes first: the formats hold the same model, so one
// reference checks both, and that they give the same logits. Every position is checked in decode
// mode when `every_position`.
void check_shape(const std::string& shape, uint32_t layers, uint32_t vocab, uint32_t n_tokens,
                 const std::vector<Run>& runs, bool every_position = false) {
  ModelCache models;
  std::map<model::DType, Rows> refs;
  const std::vector<int32_t> tokens = prompt(n_tokens, vocab, layers);
  for (const Run& r : runs) {
    auto t0 = std::chrono::steady_clock::now();
    const model::LoadedModel& m = models.get(shape, layers, vocab, r.dtype, r.format);
    double t_load = seconds_since(t0);
    auto t1 = std::chrono::steady_clock::now();
    auto it = refs.find(r.dtype);
    if (it == refs.end()) it = refs.emplace(r.dtype, reference::forward(m.config, m.weights, tokens, every_position, 2)).first;
    const Rows& want = it->second;
    double t_ref = seconds_since(t1);
    // f32 weights and cache leave only float rounding; 16-bit weights or cache round activations
    // or K/V on the way (bf16's 8-bit mantissa most).
    const bool exact = r.dtype == model::DType::F32 && r.kv == kv::KvFormat::F32;
    const double bound = exact ? 1e-4 : 1e-2;
    for (Mode mode : r.modes) {
      auto t2 = std::chrono::steady_clock::now();
      const bool every = every_position && mode == Mode::Decode;
      std::vector<std::vector<float>> got = run_executor(m, r.kv, tokens, mode, every);
      double err = 0;
      if (every) {
        REQUIRE(got.size() == want.size());
        for (size_t p = 0; p < got.size(); ++p) err = std::max(err, rel_error(got[p], want[p]));
      } else {
        err = rel_error(got.back(), want.back());
      }
      std::string what = shape + " x" + std::to_string(layers) + " " + model::dtype_name(r.dtype) + " " + r.format +
                         ", kv " + kv::format_name(r.kv) + ", " + mode_name(mode) + (every ? " (every position)" : "");
      INFO(what << ": rel error " << err);
      MESSAGE(what << ": rel error " << err << " [" << seconds_since(t2) << " s; reference " << t_ref << " s, generate+load "
                   << t_load << " s]");
      CHECK(err < bound);
    }
  }
}

}  // namespace

TEST_CASE("reference: the float64 forward reproduces the stories260K golden logits") {
  const fs::path dir = fixtures_dir() / "stories260K";
  if (!fs::exists(dir / "golden-greedy.json")) {
    MESSAGE("skipped: no fixtures at " << dir.string());
    return;
  }
  std::ifstream in(dir / "golden-greedy.json");
  std::stringstream text;
  text << in.rdbuf();
  model::json::Value golden = model::json::parse(text.str(), "golden-greedy.json");
  for (const char* source : {"stories260K.gguf", "hf"}) {
    auto m = model::load_model((dir / source).string());
    for (const model::json::Value& g : golden.find("cases")->items()) {
      std::vector<int32_t> ids;
      for (const model::json::Value& v : g.find("prompt_ids")->items()) ids.push_back(static_cast<int32_t>(*v.as_int64()));
      std::vector<double> logits = reference::forward(m->config, m->weights, ids).back();
      for (const model::json::Value& pair : g.find("last_prompt_logits_top5")->items()) {
        int64_t token = *pair.items()[0].as_int64();
        double value = *pair.items()[1].as_double();
        INFO(source << " prompt \"" << g.find("prompt")->as_string() << "\" token " << token);
        CHECK(logits[token] == doctest::Approx(value).epsilon(1e-5));
      }
      // The greedy continuation: argmax of the reference at every step.
      std::vector<int32_t> seq = ids;
      size_t step = 0;
      for (const model::json::Value& v : g.find("greedy_ids")->items()) {
        if (step++ == 8) break;  // a few steps suffice; the full 64 cost O(n^2) passes
        std::vector<double> l = reference::forward(m->config, m->weights, seq).back();
        int32_t best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
        CHECK(best == *v.as_int64());
        seq.push_back(best);
      }
    }
  }
}

TEST_CASE("reference: CPU executor matches on llama-3.2-1b layers (head_dim 64, GQA 32/8, llama3 RoPE, tied)") {
  using model::DType;
  using kv::KvFormat;
  check_shape("llama-3.2-1b", 2, 32768, 20,
              {{DType::F32, "gguf", KvFormat::F32, {Mode::Prefill, Mode::TwoChunks, Mode::Decode}},
               {DType::F32, "hf", KvFormat::F32, {Mode::Prefill}}});
}

TEST_CASE("reference: CPU executor matches on qwen2.5-0.5b layers (QKV bias, GQA 14/2, theta 1e6)") {
  using model::DType;
  using kv::KvFormat;
  check_shape("qwen2.5-0.5b", 2, 32768, 20,
              {{DType::F16, "gguf", KvFormat::F16, {Mode::Prefill, Mode::TwoChunks, Mode::Decode}},
               {DType::F16, "hf", KvFormat::F32, {Mode::Prefill}},
               {DType::BF16, "hf", KvFormat::BF16, {Mode::Prefill, Mode::Decode}},
               {DType::BF16, "gguf", KvFormat::F32, {Mode::TwoChunks}}},
              true);
}

TEST_CASE("reference: CPU executor matches on a llama-3-8b layer (head_dim 128, hidden 4096, ffn 14336)") {
  using model::DType;
  using kv::KvFormat;
  // One layer and an 8192-token vocabulary: the layer is what is being checked, and it alone is
  // 218M weights.
  check_shape("llama-3-8b", 1, 8192, 20,
              {{DType::F16, "gguf", KvFormat::F32, {Mode::Prefill, Mode::TwoChunks}},
               {DType::F16, "gguf", KvFormat::F16, {Mode::Decode}}});
}
