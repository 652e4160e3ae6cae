// load_model on the real stories260K fixture (GGUF and HF folder), and on damaged copies of it
// written to a temp folder: each damage must give its ModelErrc and a message naming the file
// and the tensor or field.
#include <doctest/doctest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "model/file_bytes.h"
#include "model/json.h"
#include "model/loader_internal.h"
#include "model/loader.h"
#include "model/model_error.h"
#include "model/safetensors.h"
#include "model_test_files.h"

using namespace fineserve::model;
using namespace fineserve::model::testing;

namespace {

fs::path fixture_gguf() { return require_fixture("stories260K.gguf"); }
fs::path fixture_hf() { return require_fixture("hf"); }

void check_stories_config(const LlamaConfig& c) {
  CHECK(c.architecture == "llama");
  CHECK(c.hidden_size == 64);
  CHECK(c.intermediate_size == 172);
  CHECK(c.num_layers == 5);
  CHECK(c.num_heads == 8);
  CHECK(c.num_kv_heads == 4);
  CHECK(c.head_dim == 8);
  CHECK(c.vocab_size == 512);
  CHECK(c.tied_embeddings);
  CHECK_FALSE(c.qkv_bias);
  CHECK(c.rms_norm_eps == doctest::Approx(1e-5));
  CHECK(c.rope_theta == 10000.0f);
  CHECK(c.rope_scaling.type == "none");
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_id == 2);
}

const float* f32(const TensorView& t) {
  REQUIRE(t.dtype == DType::F32);
  return reinterpret_cast<const float*>(t.data);
}

bool same_row(const TensorView& a, uint64_t ra, const TensorView& b, uint64_t rb) {
  return std::memcmp(f32(a) + ra * a.cols(), f32(b) + rb * b.cols(), a.cols() * sizeof(float)) == 0;
}

bool same_bytes(const TensorView& a, const TensorView& b) {
  return a.shape == b.shape && a.bytes == b.bytes && std::memcmp(a.data, b.data, a.bytes) == 0;
}

// A copy of the fixture GGUF with `patch` applied, loaded; returns the message of the error.
template <class Patch>
std::string gguf_error(Patch&& patch, ModelErrc code, std::vector<std::string> parts, LoadOptions o = {}) {
  TempDir dir;
  Bytes b = read_bytes(fixture_gguf());
  patch(b);
  fs::path p = dir / "damaged.gguf";
  write_bytes(p, b);
  parts.insert(parts.begin(), p.string());
  return expect_error([&] { load_model(p.string(), o); }, code, parts);
}

// Where a tensor's fields sit in the fixture GGUF's directory.
struct GgufTensorAt {
  size_t n_dims, ne, type, offset;  // byte positions of those fields
  size_t data;                      // absolute position of its first data byte
};
GgufTensorAt locate(const Bytes& b, const std::string& name) {
  gguf::File f = gguf::parse(b.data(), b.size(), "fixture");
  const gguf::TensorInfo* t = f.find_tensor(name);
  REQUIRE(t);
  GgufTensorAt at;
  at.n_dims = after_gguf_string(b, name);
  at.ne = at.n_dims + 4;
  at.type = at.ne + 8 * t->ne.size();
  at.offset = at.type + 4;
  at.data = f.data_offset + t->offset;
  return at;
}

// An HF folder in `dir` with the fixture's config.json and a model.safetensors whose header text
// went through `edit` (the header length is rewritten to match).
template <class Edit>
void hf_copy(const TempDir& dir, Edit&& edit) {
  fs::copy_file(fixture_hf() / "config.json", dir / "config.json");
  Bytes b = read_bytes(fixture_hf() / "model.safetensors");
  uint64_t n = peek<uint64_t>(b, 0);
  std::string header(b.begin() + 8, b.begin() + 8 + long(n));
  edit(header);
  write_bytes(dir / "model.safetensors", safetensors_bytes(header, Bytes(b.begin() + 8 + long(n), b.end())));
}

void replace_once(std::string& s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "not in the header: " << from);
  s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("loader: stories260K.gguf loads with its documented configuration") {
  auto m = load_model(fixture_gguf().string());
  check_stories_config(m->config);
  CHECK(m->config.max_context == 2048);  // the converter's default, per the fixture's README
  CHECK(m->config.rope_style == RopeStyle::Interleaved);
  CHECK(m->format == "gguf");
  CHECK(m->source == fixture_gguf().string());
  REQUIRE(m->weights.layers.size() == 5);
  CHECK(m->weights.token_embedding.shape == std::vector<uint64_t>{512, 64});
  CHECK(m->weights.layers[0].wk.shape == std::vector<uint64_t>{32, 64});
  CHECK(m->weights.layers[4].w_down.shape == std::vector<uint64_t>{64, 172});
  CHECK(m->weights.layers[0].bq.data == nullptr);
  // Its output.weight is a byte copy of the embedding: used as tied, counted once.
  CHECK(m->weights.output.data == m->weights.token_embedding.data);
  CHECK(m->weight_bytes == 1040128);
}

TEST_CASE("loader: stories260K HF folder loads with its documented configuration") {
  auto m = load_model(fixture_hf().string());
  check_stories_config(m->config);
  CHECK(m->config.max_context == 512);
  CHECK(m->config.rope_style == RopeStyle::HalfSplit);
  CHECK(m->format == "safetensors");
  CHECK(m->metadata.empty());
  CHECK(m->weights.output.data == m->weights.token_embedding.data);
  CHECK(m->weight_bytes == 1040128);
}

TEST_CASE("loader: GGUF and HF hold the same weights, Q/K rows up to the RoPE permutation") {
  auto g = load_model(fixture_gguf().string());
  auto h = load_model(fixture_hf().string());
  CHECK(same_bytes(g->weights.token_embedding, h->weights.token_embedding));
  CHECK(same_bytes(g->weights.output_norm, h->weights.output_norm));
  const uint32_t hd = g->config.head_dim;
  // HF rotates halves (rotate_half), so within each head its row t*hd/2 + i is GGUF's row
  // 2i + t, where RoPE rotates adjacent pairs: convert_hf_to_gguf.py's LlamaModel.permute.
  auto permuted = [hd](const TensorView& gg, const TensorView& hf, uint32_t heads) {
    REQUIRE(gg.shape == hf.shape);
    REQUIRE(gg.rows() == uint64_t(heads) * hd);
    for (uint32_t head = 0; head < heads; ++head) {
      for (uint32_t i = 0; i < hd / 2; ++i) {
        for (uint32_t t = 0; t < 2; ++t) {
          INFO(gg.name << " head " << head << " pair " << i << " half " << t);
          CHECK(same_row(gg, head * hd + 2 * i + t, hf, head * hd + t * hd / 2 + i));
        }
      }
    }
    CHECK_FALSE(same_bytes(gg, hf));  // the orders really differ, so the check above means something
  };
  for (size_t l = 0; l < g->weights.layers.size(); ++l) {
    const LlamaLayerWeights& a = g->weights.layers[l];
    const LlamaLayerWeights& b = h->weights.layers[l];
    permuted(a.wq, b.wq, g->config.num_heads);
    permuted(a.wk, b.wk, g->config.num_kv_heads);
    CHECK(same_bytes(a.wv, b.wv));
    CHECK(same_bytes(a.wo, b.wo));
    CHECK(same_bytes(a.attn_norm, b.attn_norm));
    CHECK(same_bytes(a.ffn_norm, b.ffn_norm));
    CHECK(same_bytes(a.w_gate, b.w_gate));
    CHECK(same_bytes(a.w_up, b.w_up));
    CHECK(same_bytes(a.w_down, b.w_down));
  }
}

TEST_CASE("loader: GGUF metadata is kept as strings, arrays as JSON") {
  auto m = load_model(fixture_gguf().string());
  const auto& md = m->metadata;
  CHECK(md.at("general.architecture") == "llama");
  CHECK(md.at("llama.context_length") == "2048");
  CHECK(md.at("llama.attention.layer_norm_rms_epsilon") == "1e-05");
  CHECK(md.at("tokenizer.ggml.padding_token_id") == "4294967295");
  json::Value tokens = json::parse(md.at("tokenizer.ggml.tokens"), "tokens");
  REQUIRE(tokens.size() == 512);
  CHECK(tokens.items()[1].as_string() == "<s>");
  CHECK(tokens.items()[3].as_string() == "<0x00>");
  CHECK(json::parse(md.at("tokenizer.ggml.scores"), "scores").size() == 512);
  CHECK(json::parse(md.at("tokenizer.ggml.token_type"), "types").items()[0].as_int64() == 2);
  CHECK(md.count("fineserve.metadata_omitted") == 0);
}

TEST_CASE("loader: progress is by bytes, ends at 1, and returning false cancels") {
  std::vector<double> seen;
  LoadOptions o;
  o.on_progress = [&](double f) {
    seen.push_back(f);
    return true;
  };
  auto m = load_model(fixture_gguf().string(), o);
  // Reading the file (one chunk), then the scan: embedding, 9 per layer, output norm (output is
  // tied). Reading and the NaN scan each weigh the file's bytes: half the fraction each.
  REQUIRE(seen.size() == 1 + 1 + 5 * 9 + 1);
  for (size_t k = 1; k < seen.size(); ++k) CHECK(seen[k] > seen[k - 1]);
  CHECK(seen[0] == doctest::Approx(0.5));
  CHECK(seen[1] == doctest::Approx(0.5 + 0.5 * 131072.0 / 1040128));
  CHECK(seen.back() == 1.0);

  for (bool finite : {true, false}) {
    int calls = 0;
    o.check_finite = finite;
    o.on_progress = [&](double) { return ++calls < 3; };
    expect_error([&] { load_model(fixture_hf().string(), o); }, ModelErrc::Cancelled,
                 {fixture_hf().string(), "cancelled"});
    CHECK(calls == 3);
  }
#ifdef __linux__
  // Nothing of the model's files stays mapped (they are read, never mapped).
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) CHECK(line.find("stories260K/hf/model.safetensors") == std::string::npos);
#endif
}

TEST_CASE("loader: damaged GGUF copies are refused, naming the file and the field or tensor") {
  SUBCASE("wrong magic") {
    gguf_error([](Bytes& b) { std::memcpy(b.data(), "GGML", 4); }, ModelErrc::Corrupt, {"magic", "not a GGUF file"});
  }
  SUBCASE("truncated header") {
    gguf_error([](Bytes& b) { b.resize(3000); }, ModelErrc::Corrupt,
               {"metadata key \"tokenizer.ggml.tokens\"", "array of 512 string", "cannot fit"});
    gguf_error([](Bytes& b) { b.resize(20); }, ModelErrc::Corrupt,
               {"header", "metadata_kv_count", "cut off", "byte 20"});
  }
  SUBCASE("truncated data") {
    gguf_error([](Bytes& b) { b.resize(b.size() - 100); }, ModelErrc::Corrupt,
               {"tensor \"blk.4.ffn_norm.weight\"", "runs past the end of the file"});
  }
  SUBCASE("tensor offset past the end of the file") {
    gguf_error([](Bytes& b) { poke<uint64_t>(b, locate(b, "blk.2.attn_q.weight").offset, 1u << 28); },
               ModelErrc::Corrupt, {"tensor \"blk.2.attn_q.weight\"", "offset 268435456", "past the end"});
  }
  SUBCASE("string length past the end") {
    gguf_error([](Bytes& b) { poke<uint64_t>(b, after_gguf_string(b, "general.architecture") + 4, 1ull << 40); },
               ModelErrc::Corrupt, {"metadata key \"general.architecture\"", "string length 1099511627776"});
  }
  SUBCASE("unsupported tensor type") {
    gguf_error([](Bytes& b) { poke<uint32_t>(b, locate(b, "blk.0.ffn_down.weight").type, 13); },
               ModelErrc::Unsupported, {"tensor \"blk.0.ffn_down.weight\"", "Q5_K"});
  }
  SUBCASE("unknown architecture") {
    gguf_error([](Bytes& b) { std::memcpy(&b[after_gguf_string(b, "general.architecture") + 12], "mamba", 5); },
               ModelErrc::Unsupported, {"general.architecture", "\"mamba\"", "llama, qwen2"});
  }
  SUBCASE("shape disagrees with the configuration") {
    gguf_error([](Bytes& b) { poke<uint64_t>(b, locate(b, "blk.1.ffn_up.weight").ne + 8, 171); },
               ModelErrc::ShapeMismatch, {"tensor \"blk.1.ffn_up.weight\"", "shape [171, 64]", "expected [172, 64]"});
  }
  SUBCASE("missing tensor") {
    gguf_error([](Bytes& b) { std::memcpy(&b[after_gguf_string(b, "blk.3.ffn_gate.weight") - 11], "gatX", 4); },
               ModelErrc::Corrupt, {"tensor \"blk.3.ffn_gate.weight\" is missing"});
  }
  SUBCASE("NaN and Inf weights") {
    auto nan = [](Bytes& b) { poke<uint32_t>(b, locate(b, "blk.3.attn_v.weight").data + 4 * 70, 0x7fc00000u); };
    gguf_error(nan, ModelErrc::BadWeights, {"tensor \"blk.3.attn_v.weight\"", "element 70 (row 1, column 6) is NaN"});
    gguf_error([](Bytes& b) { poke<uint32_t>(b, locate(b, "output_norm.weight").data, 0xff800000u); },
               ModelErrc::BadWeights, {"tensor \"output_norm.weight\"", "element 0 is Inf"});
    TempDir dir;
    Bytes b = read_bytes(fixture_gguf());
    nan(b);
    write_bytes(dir / "nan.gguf", b);
    LoadOptions unchecked;
    unchecked.check_finite = false;
    CHECK_NOTHROW(load_model((dir / "nan.gguf").string(), unchecked));
  }
}

TEST_CASE("loader: damaged HF folders are refused, naming the file and the field or tensor") {
  TempDir dir;
  const std::string st = (dir / "model.safetensors").string();
  auto fails = [&](ModelErrc code, std::vector<std::string> parts) {
    return expect_error([&] { load_model(dir.path.string()); }, code, parts);
  };
  SUBCASE("bad header length") {
    hf_copy(dir, [](std::string&) {});
    Bytes b = read_bytes(st);
    poke<uint64_t>(b, 0, b.size());
    write_bytes(st, b);
    fails(ModelErrc::Corrupt, {st, "header length"});
  }
  SUBCASE("bad JSON") {
    hf_copy(dir, [](std::string& h) { replace_once(h, "\"model.norm.weight\":", "\"model.norm.weight\";"); });
    fails(ModelErrc::Corrupt, {st, "JSON at byte", "expected ':'"});
  }
  SUBCASE("data offsets past the end") {
    hf_copy(dir, [](std::string& h) { replace_once(h, "[1039872,1040128]", "[1039872,9040128]"); });
    fails(ModelErrc::Corrupt, {st, "tensor \"model.norm.weight\"", "run past the end"});
  }
  SUBCASE("unsupported dtype") {
    hf_copy(dir, [](std::string& h) {
      replace_once(h, "\"model.norm.weight\":{\"dtype\":\"F32\"", "\"model.norm.weight\":{\"dtype\":\"F64\"");
    });
    fails(ModelErrc::Unsupported, {st, "tensor \"model.norm.weight\"", "\"F64\""});
  }
  SUBCASE("config disagrees with a tensor") {
    hf_copy(dir, [](std::string&) {});
    std::string config = R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":171,)"
                         R"("num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512})";
    write_bytes(dir / "config.json", Bytes(config.begin(), config.end()));
    fails(ModelErrc::ShapeMismatch, {st, "tensor \"model.layers.0.mlp.gate_proj.weight\"", "shape [172, 64]",
                                     "expected [171, 64] = [intermediate_size, hidden_size]"});
  }
  SUBCASE("missing config.json") {
    hf_copy(dir, [](std::string&) {});
    fs::remove(dir / "config.json");
    fails(ModelErrc::NotFound, {(dir / "config.json").string(), "config.json is missing"});
  }
  SUBCASE("no weights") {
    fs::copy_file(fixture_hf() / "config.json", dir / "config.json");
    fails(ModelErrc::NotFound, {dir.path.string(), "neither model.safetensors nor model.safetensors.index.json"});
  }
}

TEST_CASE("loader: sharded HF folders load through model.safetensors.index.json") {
  TempDir dir;
  fs::copy_file(fixture_hf() / "config.json", dir / "config.json");
  Bytes whole = read_bytes(fixture_hf() / "model.safetensors");
  safetensors::File f = safetensors::parse(whole.data(), whole.size(), "fixture");
  // Layers 0-2 and the embedding in shard 1, the rest in shard 2, each repacked from offset 0.
  std::string headers[2] = {"{", "{"};
  Bytes data[2];
  std::string map = "{\"metadata\":{\"total_size\":1040128},\"weight_map\":{";
  for (const safetensors::TensorInfo& t : f.tensors) {
    int s = (t.name.find("layers.3.") != std::string::npos || t.name.find("layers.4.") != std::string::npos ||
             t.name == "model.norm.weight") ? 1 : 0;
    std::string shape;
    for (uint64_t d : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    headers[s] += (headers[s].size() > 1 ? "," : "") + std::string("\"") + t.name +
                  "\":{\"dtype\":\"F32\",\"shape\":[" + shape + "],\"data_offsets\":[" +
                  std::to_string(data[s].size()) + "," + std::to_string(data[s].size() + t.end - t.begin) + "]}";
    TensorView v = f.view(t);
    data[s].insert(data[s].end(), v.data, v.data + v.bytes);
    map += std::string(map.back() == '{' ? "" : ",") + "\"" + t.name + "\":\"model-0000" + std::to_string(s + 1) +
           "-of-00002.safetensors\"";
  }
  map += "}}";
  const std::string names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  for (int s = 0; s < 2; ++s) write_bytes(dir / names[s], safetensors_bytes(headers[s] + "}", data[s]));
  write_bytes(dir / "model.safetensors.index.json", Bytes(map.begin(), map.end()));

  auto sharded = load_model(dir.path.string());
  auto single = load_model(fixture_hf().string());
  check_stories_config(sharded->config);
  CHECK(sharded->weight_bytes == single->weight_bytes);
  CHECK(same_bytes(sharded->weights.token_embedding, single->weights.token_embedding));
  CHECK(same_bytes(sharded->weights.layers[4].w_down, single->weights.layers[4].w_down));
  CHECK(same_bytes(sharded->weights.output_norm, single->weights.output_norm));

  SUBCASE("a missing shard is NotFound, naming it") {
    sharded.reset();
    fs::remove(dir / names[1]);
    expect_error([&] { load_model(dir.path.string()); }, ModelErrc::NotFound,
                 {(dir / names[1]).string(), "model.safetensors.index.json"});
  }
  SUBCASE("a tensor the index does not list is missing, naming it") {
    std::string cut = map;
    replace_once(cut, ",\"model.norm.weight\":\"model-00002-of-00002.safetensors\"", "");
    write_bytes(dir / "model.safetensors.index.json", Bytes(cut.begin(), cut.end()));
    expect_error([&] { load_model(dir.path.string()); }, ModelErrc::Corrupt,
                 {"model.safetensors.index.json", "tensor \"model.norm.weight\" is missing"});
  }
  SUBCASE("shard names cannot leave the folder") {
    std::string evil = map;
    replace_once(evil, "\"model-00001-of-00002.safetensors\"", "\"../model-00001-of-00002.safetensors\"");
    write_bytes(dir / "model.safetensors.index.json", Bytes(evil.begin(), evil.end()));
    expect_error([&] { load_model(dir.path.string()); }, ModelErrc::Corrupt,
                 {"model.safetensors.index.json", "expected a shard file name in this folder"});
  }
}

TEST_CASE("loader: paths that are not a model") {
  TempDir dir;
  const std::string none = (dir / "nothing-here").string();
  expect_error([&] { load_model(none); }, ModelErrc::NotFound, {none, "no such file or folder"});
  const std::string file = (fixture_hf() / "model.safetensors").string();
  expect_error([&] { load_model(file); }, ModelErrc::Unsupported, {file, "pass the folder"});
  write_bytes(dir / "empty.gguf", {});
  expect_error([&] { load_model((dir / "empty.gguf").string()); }, ModelErrc::Corrupt, {"empty.gguf", "too short"});
}

// Issue #16 item 1: a served model's file truncated in place (a user copying a new model over
// it) faulted the process with SIGBUS while the weights were read from a mapping of it.
TEST_CASE("loader: a loaded model does not depend on its files: truncating them changes nothing") {
  TempDir dir;
  fs::copy_file(fixture_gguf(), dir / "m.gguf");
  fs::create_directories(dir / "hf");
  for (const auto& e : fs::directory_iterator(fixture_hf())) fs::copy_file(e.path(), dir / "hf" / e.path().filename());
  for (const fs::path& p : {dir / "m.gguf", dir / "hf" / "model.safetensors"}) {
    const fs::path source = p.extension() == ".gguf" ? p : p.parent_path();
    auto m = load_model(source.string());
    std::vector<Bytes> before;
    for (const TensorView* t : fineserve::model::detail::distinct_tensors(m->weights)) before.emplace_back(t->data, t->data + t->bytes);
    const uint64_t size = fs::file_size(p);
    for (uint64_t cut : {size / 2, uint64_t{0}}) {
      fs::resize_file(p, cut);
      size_t k = 0;
      for (const TensorView* t : fineserve::model::detail::distinct_tensors(m->weights)) {
        INFO(source.string() << " cut to " << cut << ": " << t->name);
        CHECK(Bytes(t->data, t->data + t->bytes) == before[k++]);
      }
    }
  }
}

TEST_CASE("loader: a file that shrinks while it is read is a ModelError naming it, not a fault") {
  TempDir dir;
  const fs::path p = dir / "m.gguf";
  fs::copy_file(fixture_gguf(), p);
  int calls = 0;
  auto shrink = [&](uint64_t done, uint64_t total) {
    CHECK(total == fs::file_size(fixture_gguf()));
    if (++calls == 1) fs::resize_file(p, done + 100);
    return true;
  };
  expect_error([&] { FileBytes(p.string(), shrink, 4096); }, ModelErrc::Corrupt,
               {p.string(), "ended at byte 4196", "while being read"});
  CHECK(calls == 1);
  // Cut to nothing between chunks: the same typed error, at the first byte not read.
  fs::copy_file(fixture_gguf(), p, fs::copy_options::overwrite_existing);
  expect_error([&] { FileBytes(p.string(), [&](uint64_t, uint64_t) {
                   fs::resize_file(p, 0);
                   return true;
                 }, 1 << 16); },
               ModelErrc::Corrupt, {p.string(), "ended at byte 65536"});
  int cancel_calls = 0;
  expect_error([&] { FileBytes(fixture_gguf().string(), [&](uint64_t, uint64_t) { return ++cancel_calls < 2; }, 4096); },
               ModelErrc::Cancelled, {fixture_gguf().string(), "cancelled"});
  CHECK(cancel_calls == 2);
}

#ifdef __linux__
TEST_CASE("loader: pages of the files that no weight reads are given back (header, an unused copy)") {
  auto m = load_model(fixture_gguf().string());
  auto* mapped = dynamic_cast<fineserve::model::detail::MappedModel*>(m.get());
  REQUIRE(mapped != nullptr);
  REQUIRE(mapped->files.size() == 1);
  const FileBytes& f = mapped->files[0];
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t pages = (f.size() + page - 1) / page;
  std::vector<unsigned char> resident(pages);
  REQUIRE(::mincore(const_cast<uint8_t*>(f.data()), f.size(), resident.data()) == 0);
  uint64_t in = 0;
  for (unsigned char r : resident) in += r & 1;
  // stories260K.gguf holds output.weight as a byte copy of token_embd.weight (128 KiB, 32 pages),
  // which the tied model never reads, and a header of metadata copied out at load.
  INFO(in << " of " << pages << " pages resident");
  CHECK(in + 32 <= pages);
  // Every weight the model reads is still there.
  for (const TensorView* t : fineserve::model::detail::distinct_tensors(m->weights)) {
    const uint64_t first = (reinterpret_cast<uintptr_t>(t->data) - reinterpret_cast<uintptr_t>(f.data())) / page;
    CHECK((resident[first] & 1) == 1);
  }
}
#endif
