// Files that parse but do not describe themselves (issue 16, item 10): a layer count below the
// layers present, a tensor type or shape that does not match its bytes, safetensors offsets that
// do not tile the data, head counts that do not divide the width, vocabularies and token ids that
// disagree. Each must be a typed load error naming the file, the field and both values, never a
// model that loads and computes garbage.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "model/config_readers.h"
#include "model/gguf.h"
#include "model/json.h"
#include "model/loader.h"
#include "model/model_error.h"
#include "model/safetensors.h"
#include "model_test_files.h"

using namespace fineserve::model;
using namespace fineserve::model::testing;

namespace {

const std::string kStories = "stories260K.gguf";

// The fixture GGUF with `patch` applied, written to `dir`; returns its path.
template <class Patch>
std::string patched_gguf(const TempDir& dir, Patch&& patch) {
  Bytes b = read_bytes(require_fixture(kStories));
  patch(b);
  const std::string p = (dir / "patched.gguf").string();
  write_bytes(p, b);
  return p;
}

// Byte position of the uint32 value of metadata key `key` (after its name and type).
size_t u32_value_at(const Bytes& b, const std::string& key) {
  const size_t type_at = after_gguf_string(b, key);
  REQUIRE(peek<uint32_t>(b, type_at) == 4);  // GGUF uint32
  return type_at + 4;
}

// Byte position of the ggml type field of tensor `name` in the tensor directory.
size_t tensor_type_at(const Bytes& b, const std::string& name) {
  const size_t n_dims_at = after_gguf_string(b, name);
  return n_dims_at + 4 + 8 * size_t(peek<uint32_t>(b, n_dims_at));
}

// The fixture's HF folder copied into `dir`, with `edit` applied to config.json's text.
template <class Edit>
void hf_folder(const TempDir& dir, Edit&& edit) {
  for (const char* f : {"model.safetensors", "tokenizer.json"}) fs::copy_file(require_fixture("hf") / f, dir / f);
  Bytes cfg = read_bytes(require_fixture("hf") / "config.json");
  std::string text(cfg.begin(), cfg.end());
  edit(text);
  write_bytes(dir / "config.json", Bytes(text.begin(), text.end()));
}

void replace_text(std::string& s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "not found: " << from);
  s.replace(at, from.size(), to);
}

// The fixture's model.safetensors split into header text and data bytes.
struct Safetensors {
  std::string header;
  Bytes data;
};
Safetensors fixture_safetensors() {
  Bytes b = read_bytes(require_fixture("hf") / "model.safetensors");
  const uint64_t n = peek<uint64_t>(b, 0);
  return {std::string(b.begin() + 8, b.begin() + 8 + long(n)), Bytes(b.begin() + 8 + long(n), b.end())};
}

// A minimal GGUF "llama" header for config_from_gguf, heads and width as given.
GgufBuilder llama_meta(uint32_t hidden, uint32_t heads, uint32_t kv_heads) {
  GgufBuilder g;
  g.str("general.architecture", "llama");
  g.u32("llama.context_length", 256);
  g.u32("llama.embedding_length", hidden);
  g.u32("llama.block_count", 2);
  g.u32("llama.feed_forward_length", 128);
  g.u32("llama.attention.head_count", heads);
  g.u32("llama.attention.head_count_kv", kv_heads);
  g.f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"});
  return g;
}

LlamaConfig gguf_config(const Bytes& b) { return config_from_gguf(gguf::parse(b.data(), b.size(), "m.gguf")); }

LlamaConfig hf_config(const std::string& text) { return config_from_hf(json::parse(text, "config.json"), "config.json"); }

}  // namespace

TEST_CASE("load validation: a layer count below the layers present is refused, naming key, count and layers") {
  TempDir dir;
  SUBCASE("GGUF llama.block_count") {
    const std::string p = patched_gguf(dir, [](Bytes& b) { poke<uint32_t>(b, u32_value_at(b, "llama.block_count"), 3); });
    expect_error([&] { load_model(p); }, ModelErrc::Corrupt,
                 {p, "\"llama.block_count\"", "declares 3 layers", "tensor \"blk.4.", "belongs to layer 4",
                  "tensors of 5 layers (0..4)"});
  }
  SUBCASE("HF num_hidden_layers") {
    hf_folder(dir, [](std::string& c) { replace_text(c, "\"num_hidden_layers\": 5", "\"num_hidden_layers\": 2"); });
    expect_error([&] { load_model(dir.path.string()); }, ModelErrc::Corrupt,
                 {(dir / "model.safetensors").string(), "num_hidden_layers", "declares 2 layers",
                  "tensor \"model.layers.4.", "tensors of 5 layers (0..4)"});
  }
  SUBCASE("the declared count itself still loads") {
    hf_folder(dir, [](std::string&) {});
    CHECK(load_model(dir.path.string())->config.num_layers == 5);
  }
}

TEST_CASE("load validation: a GGUF tensor type or shape that does not match its bytes is refused") {
  TempDir dir;
  SUBCASE("BF16 declared over F32 data") {
    const std::string p = patched_gguf(dir, [](Bytes& b) { poke<uint32_t>(b, tensor_type_at(b, "blk.2.attn_q.weight"), 30); });
    expect_error([&] { load_model(p); }, ModelErrc::Corrupt,
                 {p, "tensor \"blk.2.attn_q.weight\"", "BF16 of ne [64, 64]", "needs 8192 bytes",
                  "holds 16384 bytes", "does not match the data"});
  }
  SUBCASE("F16 declared over the last tensor's F32 data") {
    Bytes b = read_bytes(require_fixture(kStories));
    gguf::File f = gguf::parse(b.data(), b.size(), "fixture");
    const gguf::TensorInfo* last = &f.tensors[0];
    for (const gguf::TensorInfo& t : f.tensors) {
      if (t.offset > last->offset) last = &t;
    }
    const std::string name = last->name;
    const std::string p = patched_gguf(dir, [&](Bytes& x) { poke<uint32_t>(x, tensor_type_at(x, name), 1); });
    expect_error([&] { load_model(p); }, ModelErrc::Corrupt, {p, "tensor \"" + name + "\"", "F16", "the end of the file"});
  }
  SUBCASE("a dimension smaller than the data") {
    GgufBuilder g;
    g.f32_tensor("a", {64});
    g.f32_tensor("b", {16});
    Bytes b = g.build();
    poke<uint64_t>(b, after_gguf_string(b, "a") + 4, 32);
    gguf::File f = gguf::parse(b.data(), b.size(), "t.gguf");
    expect_error([&] { gguf::check_data_layout(f); }, ModelErrc::Corrupt,
                 {"t.gguf", "tensor \"a\"", "F32 of ne [32]", "needs 128 bytes", "holds 256 bytes", "tensor \"b\" at 256"});
  }
  SUBCASE("data that does not start at the data section, or bytes after the last tensor") {
    GgufBuilder g;
    g.f32_tensor("a", {16});
    g.f32_tensor("b", {16});
    Bytes good = g.build();
    auto layout = [](const Bytes& b) { gguf::check_data_layout(gguf::parse(b.data(), b.size(), "t.gguf")); };
    CHECK_NOTHROW(layout(good));
    Bytes shifted = good;
    shifted.insert(shifted.end(), 64, 0);
    poke<uint64_t>(shifted, tensor_type_at(shifted, "a") + 4, 64);
    poke<uint64_t>(shifted, tensor_type_at(shifted, "b") + 4, 128);
    expect_error([&] { layout(shifted); }, ModelErrc::Corrupt,
                 {"t.gguf", "tensor \"a\"", "starts at offset 64", "belong to no tensor"});
    Bytes trailing = good;
    trailing.insert(trailing.end(), 100, 0x55);
    expect_error([&] { layout(trailing); }, ModelErrc::Corrupt,
                 {"t.gguf", "tensor \"b\"", "needs 64 bytes", "holds 164 bytes", "the end of the file"});
  }
}

TEST_CASE("load validation: safetensors offsets must tile the data section") {
  TempDir dir;
  hf_folder(dir, [](std::string&) {});
  const std::string st = (dir / "model.safetensors").string();
  Safetensors s = fixture_safetensors();
  auto load_with = [&](const std::string& header, const Bytes& data) {
    write_bytes(st, safetensors_bytes(header, data));
    return load_model(dir.path.string());
  };
  SUBCASE("garbage between the header and the data shifts every tensor") {
    Bytes data(16, 0x20);
    data.insert(data.end(), s.data.begin(), s.data.end());
    expect_error([&] { load_with(s.header, data); }, ModelErrc::Corrupt,
                 {st, "data section holds 1040144 bytes", "end at 1040128", "do not describe the data"});
  }
  SUBCASE("every offset shifted past padding") {
    std::string header = s.header;
    replace_text(header, "[0,131072]", "[16,131088]");
    Bytes data(16, 0);
    data.insert(data.end(), s.data.begin(), s.data.end() - 16);
    expect_error([&] { load_with(header, data); }, ModelErrc::Corrupt,
                 {st, "tensor \"model.embed_tokens.weight\"", "[16, 131088]", "starts at byte 16"});
  }
  SUBCASE("a gap between two tensors") {
    const std::string entries = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})";
    expect_error([&] { safetensors::parse(safetensors_bytes(entries, Bytes(24)).data(), 8 + entries.size() + 24, "t.st"); },
                 ModelErrc::Corrupt, {"t.st", "tensor \"b\"", "gap of 8 bytes", "tensor \"a\"", "ends at 8"});
  }
  SUBCASE("BF16 declared over F32 data") {
    std::string header = s.header;
    replace_text(header, "\"model.norm.weight\":{\"dtype\":\"F32\"", "\"model.norm.weight\":{\"dtype\":\"BF16\"");
    expect_error([&] { load_with(header, s.data); }, ModelErrc::Corrupt,
                 {st, "tensor \"model.norm.weight\"", "hold 256 bytes", "BF16 needs 128"});
  }
  SUBCASE("header padding with spaces, as the format allows, still loads") {
    CHECK(load_with(s.header + std::string(8, ' '), s.data)->config.num_layers == 5);
  }
}

TEST_CASE("load validation: head counts that do not divide the width name both fields and values") {
  SUBCASE("GGUF head_count does not divide embedding_length") {
    Bytes b = llama_meta(64, 6, 2).build();
    std::string msg = expect_error([&] { gguf_config(b); }, ModelErrc::Corrupt,
                                   {"m.gguf", "llama.attention.head_count", "6 heads", "llama.embedding_length = 64"});
    CHECK(msg.find("key_length is missing") == std::string::npos);
    GgufBuilder explicit_dim = llama_meta(64, 6, 2);
    explicit_dim.u32("llama.attention.key_length", 16);  // q width 96 != 64 is a real layout
    Bytes e = explicit_dim.build();
    CHECK(gguf_config(e).head_dim == 16);
  }
  SUBCASE("GGUF head_count_kv does not divide head_count") {
    Bytes b = llama_meta(64, 8, 3).build();
    expect_error([&] { gguf_config(b); }, ModelErrc::Corrupt,
                 {"m.gguf", "llama.attention.head_count_kv", "3 does not divide", "llama.attention.head_count = 8"});
  }
  const std::string base = R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,)"
                           R"("vocab_size":100,)";
  SUBCASE("HF num_attention_heads does not divide hidden_size") {
    std::string msg = expect_error([&] { hf_config(base + R"("num_attention_heads":6})"); }, ModelErrc::Corrupt,
                                   {"config.json", "num_attention_heads", "6 heads", "hidden_size = 64"});
    CHECK(msg.find("head_dim\": is missing") == std::string::npos);
    CHECK(hf_config(base + R"("num_attention_heads":6,"head_dim":16})").head_dim == 16);
    CHECK(hf_config(base + R"("num_attention_heads":4,"head_dim":null})").head_dim == 16);
  }
  SUBCASE("HF num_key_value_heads does not divide num_attention_heads") {
    expect_error([&] { hf_config(base + R"("num_attention_heads":8,"num_key_value_heads":3})"); }, ModelErrc::Corrupt,
                 {"config.json", "num_key_value_heads", "3 does not divide", "num_attention_heads = 8"});
  }
}

TEST_CASE("load validation: vocabulary sizes and token ids must agree with the model") {
  SUBCASE("GGUF vocab_size against the token list") {
    GgufBuilder g = llama_meta(64, 4, 2);
    g.u32("llama.vocab_size", 512);
    Bytes b = g.build();
    expect_error([&] { gguf_config(b); }, ModelErrc::Corrupt,
                 {"m.gguf", "\"llama.vocab_size\"", "512", "tokenizer.ggml.tokens holds 3 tokens"});
  }
  SUBCASE("GGUF BOS/EOS ids outside the vocabulary") {
    TempDir dir;
    const std::string p =
        patched_gguf(dir, [](Bytes& b) { poke<uint32_t>(b, u32_value_at(b, "tokenizer.ggml.eos_token_id"), 600); });
    expect_error([&] { load_model(p); }, ModelErrc::Corrupt,
                 {p, "tokenizer.ggml.eos_token_id", "token id 600", "= 512"});
    const std::string none =
        patched_gguf(dir, [](Bytes& b) { poke<uint32_t>(b, u32_value_at(b, "tokenizer.ggml.bos_token_id"), 0xFFFFFFFFu); });
    CHECK(load_model(none)->config.bos_token_id == -1);  // llama.cpp's "none"
  }
  SUBCASE("HF bos_token_id / eos_token_id outside vocab_size") {
    const std::string base = R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,)"
                             R"("num_attention_heads":4,"vocab_size":512,)";
    expect_error([&] { hf_config(base + R"("bos_token_id":512})"); }, ModelErrc::Corrupt,
                 {"config.json", "bos_token_id", "token id 512", "vocab_size = 512"});
    expect_error([&] { hf_config(base + R"("eos_token_id":[700, 2]})"); }, ModelErrc::Corrupt,
                 {"config.json", "eos_token_id", "token id 700", "vocab_size = 512"});
    CHECK(hf_config(base + R"("eos_token_id":511})").eos_token_id == 511);
  }
}
