// The model writers and the random-model generator, checked through the project's own readers:
// generated GGUF files and HF folders load with the configuration they were made with, hold the
// same numbers in both formats (Q/K rows permuted for interleaved RoPE in GGUF "llama" only), are
// a pure function of the seed, and shard and cancel cleanly.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include "model/generate.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/loader.h"
#include "model/model_error.h"
#include "model/safetensors_writer.h"
#include "reference_llama.h"

using namespace fineserve::model;
namespace fs = std::filesystem;

namespace {

// A fresh folder under the system temp dir, removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("fineserve-gen-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

GenerateResult make(const std::string& shape, const std::string& format, DType dtype, const std::string& out,
                    uint64_t seed = 7, uint64_t shard = 5'000'000'000ull) {
  GenerateOptions o;
  o.shape = shape;
  o.format = format;
  o.dtype = dtype;
  o.out = out;
  o.seed = seed;
  o.max_shard_bytes = shard;
  return generate_model(o);
}

void check_config(const LlamaConfig& got, const LlamaConfig& want) {
  CHECK(got.architecture == want.architecture);
  CHECK(got.vocab_size == want.vocab_size);
  CHECK(got.hidden_size == want.hidden_size);
  CHECK(got.intermediate_size == want.intermediate_size);
  CHECK(got.num_layers == want.num_layers);
  CHECK(got.num_heads == want.num_heads);
  CHECK(got.num_kv_heads == want.num_kv_heads);
  CHECK(got.head_dim == want.head_dim);
  CHECK(got.max_context == want.max_context);
  CHECK(got.rms_norm_eps == want.rms_norm_eps);
  CHECK(got.rope_theta == want.rope_theta);
  CHECK(got.rope_style == want.rope_style);
  CHECK(got.rope_scaling.type == want.rope_scaling.type);
  CHECK(got.rope_scaling.factor == want.rope_scaling.factor);
  CHECK(got.rope_scaling.low_freq_factor == want.rope_scaling.low_freq_factor);
  CHECK(got.rope_scaling.high_freq_factor == want.rope_scaling.high_freq_factor);
  CHECK(got.rope_scaling.original_max_position == want.rope_scaling.original_max_position);
  CHECK(got.tied_embeddings == want.tied_embeddings);
  CHECK(got.qkv_bias == want.qkv_bias);
  CHECK(got.bos_token_id == want.bos_token_id);
  CHECK(got.eos_token_id == want.eos_token_id);
}

std::vector<double> values(const TensorView& t) { return fineserve::reference::read_all(t); }

// Tensor `gguf` equals `hf`, except that with `qk_head_dim` its rows (or elements, for a bias)
// are HF's in interleaved order.
void check_same(const TensorView& gguf, const TensorView& hf, uint32_t qk_head_dim = 0) {
  INFO("tensor " << hf.name);
  REQUIRE(gguf.shape == hf.shape);
  std::vector<double> a = values(gguf), b = values(hf);
  const uint64_t rows = gguf.shape.size() == 2 ? gguf.shape[0] : gguf.elements();
  const uint64_t cols = gguf.elements() / rows;
  uint64_t mismatches = 0;
  for (uint64_t r = 0; r < rows; ++r) {
    uint64_t src = qk_head_dim ? hf_row_of_gguf_qk_row(r, qk_head_dim) : r;
    mismatches += std::memcmp(&a[r * cols], &b[src * cols], cols * sizeof(double)) != 0;
  }
  CHECK(mismatches == 0);
}

void check_same_model(const LoadedModel& g, const LoadedModel& h) {
  const LlamaConfig& c = g.config;
  const bool permuted = c.rope_style == RopeStyle::Interleaved;
  const uint32_t qk = permuted ? c.head_dim : 0;
  check_same(g.weights.token_embedding, h.weights.token_embedding);
  check_same(g.weights.output, h.weights.output);
  check_same(g.weights.output_norm, h.weights.output_norm);
  REQUIRE(g.weights.layers.size() == h.weights.layers.size());
  for (size_t l = 0; l < g.weights.layers.size(); ++l) {
    const LlamaLayerWeights& a = g.weights.layers[l];
    const LlamaLayerWeights& b = h.weights.layers[l];
    check_same(a.attn_norm, b.attn_norm);
    check_same(a.wq, b.wq, qk);
    check_same(a.wk, b.wk, qk);
    check_same(a.wv, b.wv);
    check_same(a.wo, b.wo);
    check_same(a.ffn_norm, b.ffn_norm);
    check_same(a.w_gate, b.w_gate);
    check_same(a.w_up, b.w_up);
    check_same(a.w_down, b.w_down);
    if (c.qkv_bias) {
      check_same(a.bq, b.bq, qk);
      check_same(a.bk, b.bk, qk);
      check_same(a.bv, b.bv);
    }
  }
}

}  // namespace

TEST_CASE("generate: shapes match the published parameter counts of the real models") {
  CHECK(parameter_count(shape_config("llama-3.2-1b")) == 1'235'814'400ull);
  CHECK(parameter_count(shape_config("llama-3-8b")) == 8'030'261'248ull);
  CHECK(parameter_count(shape_config("qwen2.5-0.5b")) == 494'032'768ull);
  uint64_t m100 = parameter_count(shape_config("llama-100m"));
  CHECK(m100 > 90'000'000ull);
  CHECK(m100 < 130'000'000ull);
  LlamaConfig two = shape_config("llama-3-8b", 2, 32768);
  CHECK(two.num_layers == 2);
  CHECK(two.vocab_size == 32768);
  CHECK(two.head_dim == 128);
  try {
    shape_config("llama-70b");
    FAIL("expected an error");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("llama-3.2-1b") != std::string::npos);
  }
}

TEST_CASE("generate: GGUF and HF of one seed load with its config and hold the same weights") {
  TempDir dir;
  for (const char* shape : {"tiny", "tiny-qwen2"}) {
    for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
      INFO(shape << " " << dtype_name(dtype));
      GenerateResult rg = make(shape, "gguf", dtype, dir / (std::string(shape) + dtype_name(dtype) + ".gguf"));
      GenerateResult rh = make(shape, "hf", dtype, dir / (std::string(shape) + dtype_name(dtype)));
      CHECK(rg.parameters == rh.parameters);
      CHECK(rg.bytes == fs::file_size(rg.path));
      auto g = load_model(rg.path);
      auto h = load_model(rh.path);
      check_config(g->config, rg.config);
      check_config(h->config, rh.config);
      CHECK(g->config.rope_style == (std::string(shape) == "tiny" ? RopeStyle::Interleaved : RopeStyle::HalfSplit));
      CHECK(h->config.rope_style == RopeStyle::HalfSplit);
      CHECK(g->weights.layers[0].wq.dtype == dtype);
      CHECK(h->weights.layers[0].wq.dtype == dtype);
      CHECK(g->weights.layers[0].attn_norm.dtype == DType::F32);  // as llama.cpp keeps 1-D tensors
      CHECK(h->weights.layers[0].attn_norm.dtype == dtype);
      check_same_model(*g, *h);
    }
  }
}

TEST_CASE("generate: a seed gives the same bytes every time, another seed other weights") {
  TempDir dir;
  make("tiny", "gguf", DType::F16, dir / "a.gguf", 11);
  make("tiny", "gguf", DType::F16, dir / "b.gguf", 11);
  make("tiny", "gguf", DType::F16, dir / "c.gguf", 12);
  CHECK(file_bytes(dir / "a.gguf") == file_bytes(dir / "b.gguf"));
  auto a = load_model(dir / "a.gguf");
  auto c = load_model(dir / "c.gguf");
  const TensorView& wa = a->weights.layers[1].w_up;
  const TensorView& wc = c->weights.layers[1].w_up;
  CHECK(std::memcmp(wa.data, wc.data, wa.bytes) != 0);
  // Sane random weights: matrices ~ 1/sqrt(fan_in), norms ~ 1.
  std::vector<double> up = values(wa), norm = values(a->weights.layers[0].ffn_norm);
  double ss = 0, mean_norm = 0;
  for (double v : up) ss += v * v;
  for (double v : norm) mean_norm += v / static_cast<double>(norm.size());
  CHECK(std::sqrt(ss / static_cast<double>(up.size())) * std::sqrt(static_cast<double>(wa.cols())) ==
        doctest::Approx(1.0).epsilon(0.05));
  CHECK(mean_norm == doctest::Approx(1.0).epsilon(0.05));
}

TEST_CASE("generate: an HF model past the shard size is written as shards with an index and loads the same") {
  TempDir dir;
  GenerateResult one = make("tiny", "hf", DType::BF16, dir / "one");
  GenerateResult many = make("tiny", "hf", DType::BF16, dir / "many", 7, 40'000);
  CHECK(!fs::exists(dir / "one/model.safetensors.index.json"));
  CHECK(fs::exists(dir / "many/model.safetensors.index.json"));
  CHECK(!fs::exists(dir / "many/model.safetensors"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(many.path)) {
    shards += e.path().filename().string().rfind("model-0000", 0) == 0;
  }
  CHECK(shards > 2);
  CHECK(many.bytes > one.bytes);  // the index and the shards' own headers
  auto a = load_model(one.path);
  auto b = load_model(many.path);
  check_config(b->config, many.config);
  check_same_model(*a, *b);

  // Written again over the sharded one, unsharded: no stale shard or index is left to mislead a reader.
  b.reset();
  make("tiny", "hf", DType::BF16, many.path);
  CHECK(!fs::exists(dir / "many/model.safetensors.index.json"));
  int left = 0;
  for (const auto& e : fs::directory_iterator(many.path)) left += e.path().extension() == ".safetensors";
  CHECK(left == 1);
  check_same_model(*a, *load_model(many.path));
}

TEST_CASE("generate: cancelling from the progress callback leaves nothing behind") {
  TempDir dir;
  for (const char* format : {"gguf", "hf"}) {
    GenerateOptions o;
    o.shape = "tiny";
    o.format = format;
    o.out = dir / (std::string("cancelled.") + format);
    std::vector<double> seen;
    o.on_progress = [&](double f) {
      seen.push_back(f);
      return false;
    };
    try {
      generate_model(o);
      FAIL("expected a cancellation");
    } catch (const ModelError& e) {
      CHECK(e.code() == ModelErrc::Cancelled);
    }
    CHECK(!seen.empty());
    CHECK(!fs::exists(o.out));
    CHECK(!fs::exists(o.out + ".part"));
  }
  CHECK(fs::is_empty(dir.path));

  GenerateOptions o;
  o.shape = "tiny";
  o.out = dir / "progress.gguf";
  std::vector<double> seen;
  o.on_progress = [&](double f) {
    seen.push_back(f);
    return true;
  };
  generate_model(o);
  REQUIRE(!seen.empty());
  CHECK(seen.back() == 1.0);
  for (size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] >= seen[i - 1]);
}

TEST_CASE("generate: bad options are rejected by name") {
  GenerateOptions o;
  o.out = "";
  CHECK_THROWS_WITH_AS(generate_model(o), doctest::Contains("out"), std::invalid_argument);
  o.out = "/tmp/x";
  o.format = "onnx";
  CHECK_THROWS_WITH_AS(generate_model(o), doctest::Contains("format"), std::invalid_argument);
  o.format = "gguf";
  o.vocab = 3;
  CHECK_THROWS_WITH_AS(generate_model(o), doctest::Contains("vocab"), std::invalid_argument);
}

TEST_CASE("gguf writer: every metadata type, F32/F16/BF16 tensors written in pieces, aligned data") {
  TempDir dir;
  const std::string path = dir / "types.gguf";
  {
    GgufWriter w(path);
    w.add_string("general.architecture", "test");
    w.add_u32("u32", 4000000000u);
    w.add_i32("i32", -5);
    w.add_u64("u64", 1ull << 40);
    w.add_f32("f32", 0.25f);
    w.add_bool("yes", true);
    w.add_string_array("strings", {"a", "", "ccc"});
    w.add_i32_array("ints", {-1, 2, -3});
    w.add_u32_array("uints", {7, 8});
    w.add_f32_array("floats", {1.5f, -2.0f});
    CHECK_THROWS_AS(w.add_u32("u32", 1), std::invalid_argument);
    w.add_tensor("m", DType::F16, {3, 5});
    w.add_tensor("v", DType::F32, {7});
    w.add_tensor("b", DType::BF16, {2, 3});
    w.begin_data();
    std::vector<float> m(15);
    for (int i = 0; i < 15; ++i) m[i] = 0.5f * i;
    w.write_f32(m.data(), 4);
    w.write_f32(m.data() + 4, 11);
    std::vector<float> v = {1, 2, 3, 4, 5, 6, 7};
    CHECK_THROWS_AS(w.write(v.data(), 8 * 4), std::logic_error);  // past the tensor's end
    w.write(v.data(), 7 * 4);
    CHECK_THROWS_AS(w.finish(), std::logic_error);                 // "b" got nothing
    CHECK(!fs::exists(path));
    std::vector<float> b = {-1, 0.5f, 3, 1e-3f, 100, -7};
    w.write_f32(b.data(), 6);
    w.finish();
    CHECK(w.file_bytes() == fs::file_size(path));
  }
  std::vector<uint8_t> bytes = file_bytes(path);
  gguf::File f = gguf::parse(bytes.data(), bytes.size(), path);
  CHECK(f.version == 3);
  CHECK(f.alignment == 32);
  CHECK(f.find("u32")->u == 4000000000u);
  CHECK(f.find("i32")->i == -5);
  CHECK(f.find("u64")->u == (1ull << 40));
  CHECK(f.find("f32")->f == 0.25);
  CHECK(f.find("yes")->u == 1);
  REQUIRE(f.find("strings")->strings.size() == 3);
  CHECK(f.find("strings")->strings[2] == "ccc");
  CHECK(f.find("ints")->element(2).i == -3);
  CHECK(f.find("uints")->element(1).u == 8);
  CHECK(f.find("floats")->element(1).f == -2.0);
  CHECK(f.find("general.alignment")->u == 32);
  REQUIRE(f.tensors.size() == 3);
  const gguf::TensorInfo* m = f.find_tensor("m");
  CHECK(m->ne == std::vector<uint64_t>{5, 3});  // fastest first
  CHECK(m->dtype == DType::F16);
  for (const gguf::TensorInfo& t : f.tensors) CHECK((f.data_offset + t.offset) % 32 == 0);
  std::vector<double> mv = values(f.view(*m));
  for (int i = 0; i < 15; ++i) CHECK(mv[i] == 0.5 * i);
  std::vector<double> bv = values(f.view(*f.find_tensor("b")));
  CHECK(bv[0] == -1);
  CHECK(bv[4] == 100);
  CHECK(values(f.view(*f.find_tensor("v")))[6] == 7);
}

TEST_CASE("safetensors writer: a failed write leaves no shard behind") {
  TempDir dir;
  {
    SafetensorsWriter w(dir / "hf", 64);
    w.add_tensor("a", DType::F32, {4, 4});
    w.add_tensor("b", DType::F32, {4, 4});
    w.begin_data();
    std::vector<float> z(16);
    w.write_f32(z.data(), 16);
    CHECK(w.files().size() == 2);
  }  // destroyed before "b" was written
  CHECK(fs::is_empty(dir / "hf"));
}
