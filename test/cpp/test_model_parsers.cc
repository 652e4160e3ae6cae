// The model file parsers on hand-built bytes: JSON, GGUF (every metadata type, every bound),
// safetensors, and the two config readers. The real fixture is test_model_loader.cc's.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "model/config_readers.h"
#include "model/gguf.h"
#include "model/json.h"
#include "model/model_error.h"
#include "model/safetensors.h"
#include "model_test_files.h"

using namespace fineserve::model;
using namespace fineserve::model::testing;

namespace {

json::Value parse_json(const std::string& text) { return json::parse(text, "test.json"); }

void json_fails(const std::string& text, const std::string& at, const std::string& what) {
  INFO("input: " << text);
  expect_error([&] { parse_json(text); }, ModelErrc::Corrupt, {"test.json", "JSON at byte " + at, what});
}

gguf::File parse_gguf(const Bytes& b) { return gguf::parse(b.data(), b.size(), "t.gguf"); }
safetensors::File parse_st(const Bytes& b) { return safetensors::parse(b.data(), b.size(), "t.safetensors"); }

}  // namespace

TEST_CASE("json: values, escapes and surrogate pairs") {
  json::Value v = parse_json(R"( {"a": [1, -2.5e3, true, false, null], "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00",
                                  "o": {"k": {}}, "e": []} )");
  REQUIRE(v.is_object());
  CHECK(v.keys() == std::vector<std::string>{"a", "s", "o", "e"});
  const json::Value* a = v.find("a");
  REQUIRE(a);
  REQUIRE(a->size() == 5);
  CHECK(a->items()[0].as_int64() == 1);
  CHECK(a->items()[1].as_double() == -2500.0);
  CHECK(a->items()[2].as_bool());
  CHECK(a->items()[3].is_bool());
  CHECK(a->items()[4].is_null());
  CHECK(v.find("s")->as_string() == "x\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.find("o")->find("k")->is_object());
  CHECK(v.find("e")->is_array());
  CHECK(v.find("missing") == nullptr);
  CHECK(parse_json("\"\xe2\x82\xac\"").as_string() == "\xe2\x82\xac");  // raw UTF-8 passes
}

TEST_CASE("json: integers stay exact, non-integers and out-of-range values are refused") {
  CHECK(parse_json("18446744073709551615").as_uint64() == UINT64_MAX);
  CHECK(parse_json("18446744073709551616").as_uint64() == std::nullopt);
  CHECK(parse_json("-9223372036854775808").as_int64() == INT64_MIN);
  CHECK(parse_json("-1").as_uint64() == std::nullopt);
  CHECK(parse_json("1.0").as_int64() == std::nullopt);
  CHECK(parse_json("1e3").as_uint64() == std::nullopt);
  CHECK(parse_json("1e3").as_double() == 1000.0);
  CHECK(parse_json("1e999").as_double() == std::nullopt);
  CHECK(parse_json("0.1").as_double() == 0.1);
  CHECK(parse_json("\"1\"").as_int64() == std::nullopt);
}

TEST_CASE("json: malformed input is Corrupt with the byte offset") {
  json_fails("", "0", "unexpected end");
  json_fails("{\"a\":1,}", "7", "expected a string key");
  json_fails("[1 2]", "3", "expected ']'");
  json_fails("{\"a\" 1}", "5", "expected ':'");
  json_fails("01", "1", "unexpected content after");
  json_fails("-", "1", "expected a digit");
  json_fails("1.", "2", "digit after '.'");
  json_fails("NaN", "0", "unexpected character 'N'");
  json_fails("tru", "0", "invalid literal");
  json_fails("[1] x", "4", "unexpected content");
  json_fails("\"abc", "4", "unterminated string");
  json_fails("\"a\x01\"", "2", "control character 0x01");
  json_fails("\"\\x\"", "1", "invalid escape \\x");
  json_fails("\"\\u12G4\"", "5", "invalid hex digit");
  json_fails("\"\\ud800\"", "1", "high surrogate without");
  json_fails("\"\\ud800\\u0041\"", "1", "non-low-surrogate");
  json_fails("\"\\udc00\"", "1", "unpaired low surrogate");
  json_fails("\"\xc3\x28\"", "1", "invalid UTF-8");
  json_fails("\"\xc0\x80\"", "1", "invalid UTF-8");          // overlong NUL
  json_fails("\"\xed\xa0\x80\"", "1", "invalid UTF-8");      // encoded surrogate
  json_fails("\"\xf4\x90\x80\x80\"", "1", "invalid UTF-8");  // past U+10FFFF
  json_fails("{\"k\":1,\"k\":2}", "0", "duplicate key \"k\"");
}

TEST_CASE("json: nesting is bounded") {
  std::string ok(64, '['), deep(65, '[');
  ok += std::string(64, ']');
  deep += std::string(65, ']');
  CHECK_NOTHROW(parse_json(ok));
  json_fails(deep, "64", "nesting deeper than 64");
  CHECK_THROWS_AS(json::parse("[[1]]", "t", 1), ModelError);
}

TEST_CASE("json: append_quoted escapes what JSON requires and nothing else") {
  std::string out;
  json::append_quoted(out, std::string("a\"\\\n\x01\x7f\xc3\xa9", 8));
  CHECK(out == "\"a\\\"\\\\\\n\\u0001\\u007f\xc3\xa9\"");
  CHECK(parse_json(out).as_string() == std::string("a\"\\\n\x01\x7f\xc3\xa9", 8));
}

TEST_CASE("gguf: every metadata type, alignment, and F32/F16/BF16 tensors") {
  GgufBuilder g;
  g.alignment = 64;
  g.u32("general.alignment", 64);
  g.key("u8", 0), put<uint8_t>(g.kv, 200);
  g.key("i8", 1), put<int8_t>(g.kv, -100);
  g.key("u16", 2), put<uint16_t>(g.kv, 60000);
  g.key("i16", 3), put<int16_t>(g.kv, -30000);
  g.key("i32", 5), put<int32_t>(g.kv, -7);
  g.f32("f32", 1.5f);
  g.key("bool", 7), put<uint8_t>(g.kv, 1);
  g.str("string", "h\xc3\xa9llo");
  g.key("u64", 10), put<uint64_t>(g.kv, UINT64_MAX);
  g.key("i64", 11), put<int64_t>(g.kv, INT64_MIN);
  g.key("f64", 12), put<double>(g.kv, 0.25);
  g.key("i16s", 9), put<uint32_t>(g.kv, 3), put<uint64_t>(g.kv, 3);
  for (int16_t x : {-1, 0, 1}) put(g.kv, x);
  g.strings("strs", {"a", "", "c"});
  g.key("nested", 9), put<uint32_t>(g.kv, 9), put<uint64_t>(g.kv, 2);  // [[1, 2], []] of uint8
  put<uint32_t>(g.kv, 0), put<uint64_t>(g.kv, 2), put<uint8_t>(g.kv, 1), put<uint8_t>(g.kv, 2);
  put<uint32_t>(g.kv, 0), put<uint64_t>(g.kv, 0);
  g.f32_tensor("a", {3, 2});
  g.tensor("b", {4}, 1, Bytes(8, 0x3c));
  g.tensor("c", {2, 1, 1, 1}, 30, Bytes(4, 0x3f));
  Bytes bytes = g.build();
  gguf::File f = parse_gguf(bytes);

  CHECK(f.version == 3);
  CHECK(f.alignment == 64);
  CHECK(f.data_offset % 64 == 0);
  CHECK(f.find("u8")->u == 200);
  CHECK(f.find("i8")->i == -100);
  CHECK(f.find("u16")->u == 60000);
  CHECK(f.find("i16")->as_int() == -30000);
  CHECK(f.find("i32")->as_number() == -7.0);
  CHECK(f.find("f32")->f == 1.5);
  CHECK(f.find("bool")->u == 1);
  CHECK(f.find("string")->str == "h\xc3\xa9llo");
  CHECK(f.find("u64")->as_int() == std::nullopt);  // does not fit int64
  CHECK(f.find("u64")->u == UINT64_MAX);
  CHECK(f.find("i64")->i == INT64_MIN);
  CHECK(f.find("f64")->f == 0.25);
  const gguf::Value* i16s = f.find("i16s");
  REQUIRE(i16s->count == 3);
  CHECK(i16s->element(0).i == -1);
  CHECK(i16s->element(2).i == 1);
  CHECK(f.find("strs")->strings == std::vector<std::string_view>{"a", "", "c"});
  const gguf::Value* nested = f.find("nested");
  REQUIRE(nested->arrays.size() == 2);
  CHECK(nested->arrays[0].element(1).u == 2);
  CHECK(nested->arrays[1].count == 0);
  CHECK(f.find("nope") == nullptr);

  REQUIRE(f.tensors.size() == 3);
  TensorView a = f.view(*f.find_tensor("a"));
  CHECK(a.shape == std::vector<uint64_t>{2, 3});  // outermost first: ne reversed
  CHECK(a.dtype == DType::F32);
  CHECK(a.bytes == 24);
  CHECK(a.data == bytes.data() + f.data_offset);
  TensorView b = f.view(*f.find_tensor("b"));
  CHECK(b.dtype == DType::F16);
  CHECK(uint64_t(b.data - bytes.data()) % 64 == 0);
  TensorView c = f.view(*f.find_tensor("c"));
  CHECK(c.dtype == DType::BF16);
  CHECK(c.shape == std::vector<uint64_t>{1, 1, 1, 2});
  CHECK(c.data + c.bytes == bytes.data() + bytes.size());

  SUBCASE("version 2 has the same layout") {
    poke<uint32_t>(bytes, 4, 2);
    CHECK(parse_gguf(bytes).version == 2);
  }
  SUBCASE("every truncation is Corrupt, never a crash") {
    for (size_t n = 0; n < bytes.size(); ++n) {
      Bytes cut(bytes.begin(), bytes.begin() + long(n));
      INFO("prefix of " << n << " bytes");
      CHECK_THROWS_AS(parse_gguf(cut), ModelError);
    }
  }
}

TEST_CASE("gguf: versions other than 2 and 3 are Unsupported") {
  GgufBuilder g;
  g.version = 1;
  expect_error([&] { parse_gguf(g.build()); }, ModelErrc::Unsupported, {"t.gguf", "version 1", "64-bit counts"});
  g.version = 0x03000000;  // 3, big-endian
  expect_error([&] { parse_gguf(g.build()); }, ModelErrc::Unsupported, {"big-endian"});
  g.version = 4;
  expect_error([&] { parse_gguf(g.build()); }, ModelErrc::Unsupported, {"version 4"});
}

TEST_CASE("gguf: hostile counts, lengths and offsets are Corrupt, naming the field") {
  GgufBuilder g;
  g.str("general.architecture", "llama");
  g.f32_tensor("w", {4, 2});
  g.f32_tensor("v", {4});
  const Bytes good = g.build();
  const size_t key_type = after_gguf_string(good, "general.architecture");
  const size_t w_info = after_gguf_string(good, "w");  // n_dims of tensor "w"
  auto fails = [](const Bytes& b, std::vector<std::string> parts) {
    parts.insert(parts.begin(), "t.gguf");
    expect_error([&] { parse_gguf(b); }, ModelErrc::Corrupt, parts);
  };

  Bytes b = good;
  b[0] = 'X';
  fails(b, {"magic", "not a GGUF file"});
  b = good;
  poke<uint64_t>(b, 8, uint64_t(1) << 60);
  fails(b, {"tensor_count 1152921504606846976"});
  b = good;
  poke<uint64_t>(b, 16, UINT64_MAX);
  fails(b, {"metadata_kv_count 18446744073709551615"});
  b = good;
  poke<uint64_t>(b, 24, uint64_t(1) << 40);
  fails(b, {"metadata key #0", "string length 1099511627776"});
  b = good;
  poke<uint32_t>(b, key_type, 13);
  fails(b, {"\"general.architecture\"", "value type 13"});
  b = good;
  poke<uint64_t>(b, key_type + 4, 1000000);
  fails(b, {"\"general.architecture\"", "string length 1000000"});
  b = good;
  poke<uint32_t>(b, w_info, 5);
  fails(b, {"tensor \"w\"", "n_dims 5"});
  b = good;
  poke<uint64_t>(b, w_info + 4, uint64_t(1) << 63);
  fails(b, {"tensor \"w\"", "negative"});
  b = good;
  poke<uint64_t>(b, w_info + 4, uint64_t(1) << 62);
  poke<uint64_t>(b, w_info + 12, uint64_t(1) << 62);
  fails(b, {"tensor \"w\"", "overflows"});
  b = good;
  poke<uint64_t>(b, w_info + 4 + 16 + 4, 1u << 20);  // offset of "w"
  fails(b, {"tensor \"w\"", "offset 1048576", "past the end"});
  b = good;
  poke<uint64_t>(b, w_info + 4 + 16 + 4, 3);
  fails(b, {"tensor \"w\"", "not a multiple of the alignment 32"});
  b = good;
  poke<uint64_t>(b, after_gguf_string(good, "v") + 4 + 8 + 4, 0);  // "v" onto "w"
  fails(b, {"overlaps tensor"});

  GgufBuilder d;
  d.u32("general.alignment", 48);
  fails(d.build(), {"general.alignment", "48 is not a power of two"});
  GgufBuilder e;
  e.str("k", "a");
  e.str("k", "b");
  fails(e.build(), {"metadata key \"k\"", "appears twice"});
  GgufBuilder t;
  t.f32_tensor("x", {1});
  t.f32_tensor("x", {1});
  fails(t.build(), {"tensor \"x\"", "appears twice"});
  GgufBuilder bl;
  bl.key("flag", 7), put<uint8_t>(bl.kv, 2);
  fails(bl.build(), {"\"flag\"", "bool value 2"});
  GgufBuilder arr;
  arr.key("big", 9), put<uint32_t>(arr.kv, 8), put<uint64_t>(arr.kv, uint64_t(1) << 59);
  fails(arr.build(), {"\"big\"", "array of 576460752303423488 string"});
  GgufBuilder deep;
  deep.key("deep", 9);
  for (int k = 0; k < 9; ++k) put<uint32_t>(deep.kv, 9), put<uint64_t>(deep.kv, 1);
  put<uint32_t>(deep.kv, 0), put<uint64_t>(deep.kv, 0);
  fails(deep.build(), {"\"deep\"", "nested deeper than 8"});
}

TEST_CASE("gguf: unsupported quantized and unknown tensor types are Unsupported, naming tensor and type") {
  GgufBuilder g;
  g.tensor("blk.0.ffn_up.weight", {256}, 13, Bytes(176, 0));
  expect_error([&] { parse_gguf(g.build()); }, ModelErrc::Unsupported,
               {"t.gguf", "\"blk.0.ffn_up.weight\"", "Q5_K", "ggml type 13"});
  GgufBuilder u;
  u.tensor("x", {1}, 99, Bytes(4, 0));
  expect_error([&] { parse_gguf(u.build()); }, ModelErrc::Unsupported, {"\"x\"", "ggml type 99 (unknown)"});
}

TEST_CASE("safetensors: F32/F16/BF16 tensors, __metadata__ skipped, views in data order") {
  std::string header = R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},)"
                       R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                       R"("c":{"dtype":"BF16","shape":[],"data_offsets":[20,22]},)"
                       R"("z":{"dtype":"F32","shape":[0,4],"data_offsets":[22,22]}}  )";
  Bytes data(22);
  for (size_t k = 0; k < data.size(); ++k) data[k] = uint8_t(k);
  Bytes bytes = safetensors_bytes(header, data);
  safetensors::File f = parse_st(bytes);
  REQUIRE(f.tensors.size() == 4);
  CHECK(f.tensors[0].name == "a");
  CHECK(f.find("__metadata__") == nullptr);
  TensorView b = f.view(*f.find("b"));
  CHECK(b.dtype == DType::F16);
  CHECK(b.shape == std::vector<uint64_t>{2});
  CHECK(b.data == bytes.data() + 8 + header.size() + 16);
  CHECK(b.bytes == 4);
  CHECK(f.view(*f.find("c")).dtype == DType::BF16);
  CHECK(f.view(*f.find("c")).elements() == 1);
  CHECK(f.view(*f.find("z")).bytes == 0);
}

TEST_CASE("safetensors: malformed files are Corrupt, unknown dtypes Unsupported") {
  auto with = [](const std::string& entry, size_t data = 16) {
    return safetensors_bytes("{\"t\":" + entry + "}", Bytes(data, 0));
  };
  auto fails = [](const Bytes& b, std::vector<std::string> parts, ModelErrc code = ModelErrc::Corrupt) {
    parts.insert(parts.begin(), "t.safetensors");
    expect_error([&] { parse_st(b); }, code, parts);
  };
  fails(Bytes(5, 0), {"too short for the 8-byte header length"});
  Bytes b = with(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})");
  CHECK_NOTHROW(parse_st(b));
  poke<uint64_t>(b, 0, 1000);
  fails(b, {"header length 1000 runs past the end"});
  poke<uint64_t>(b, 0, uint64_t(1) << 40);
  fails(b, {"header length 1099511627776 exceeds"});
  fails(safetensors_bytes("[1]", {}), {"header is a JSON array"});
  fails(safetensors_bytes("{\"t\":", {}), {"header: JSON at byte 5"});
  fails(with("3"), {"tensor \"t\"", "entry is a JSON number"});
  fails(with(R"({"shape":[4],"data_offsets":[0,16]})"), {"tensor \"t\"", "\"dtype\""});
  fails(with(R"({"dtype":"F32","data_offsets":[0,16]})"), {"\"shape\""});
  fails(with(R"({"dtype":"F32","shape":[4],"data_offsets":[0]})"), {"\"data_offsets\""});
  fails(with(R"({"dtype":"F32","shape":[-4],"data_offsets":[0,16]})"), {"shape holds -4"});
  fails(with(R"({"dtype":"F32","shape":[4.0],"data_offsets":[0,16]})"), {"shape holds 4.0"});
  fails(with(R"({"dtype":"F32","shape":[4],"data_offsets":[16,0]})"), {"run backwards"});
  fails(with(R"({"dtype":"F32","shape":[4],"data_offsets":[0,17]})"), {"[0, 17] run past the end", "16 bytes of data"});
  fails(with(R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})"), {"hold 16 bytes", "needs 12"});
  fails(with(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]})"), {"overflows"});
  fails(with(R"({"dtype":"I64","shape":[2],"data_offsets":[0,16]})"), {"tensor \"t\"", "dtype \"I64\""},
        ModelErrc::Unsupported);
  fails(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                          Bytes(16, 0)),
        {"tensor \"b\"", "overlap tensor \"a\""});
}

TEST_CASE("model config: HF config.json of each supported architecture") {
  auto hf = [](const std::string& text) { return config_from_hf(json::parse(text, "config.json"), "config.json"); };
  const std::string base = R"("hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,)"
                           R"("vocab_size":100)";
  LlamaConfig q = hf("{\"architectures\":[\"Qwen2ForCausalLM\"]," + base +
                     ",\"num_key_value_heads\":2,\"tie_word_embeddings\":true,\"eos_token_id\":[7,8],"
                     "\"bos_token_id\":null}");
  CHECK(q.architecture == "qwen2");
  CHECK(q.qkv_bias);
  CHECK(q.rope_style == RopeStyle::HalfSplit);
  CHECK(q.num_kv_heads == 2);
  CHECK(q.head_dim == 16);
  CHECK(q.tied_embeddings);
  CHECK(q.eos_token_id == 7);
  CHECK(q.bos_token_id == -1);
  CHECK(q.max_context == 32768);  // Qwen2Config's default
  CHECK(q.rms_norm_eps == doctest::Approx(1e-6));

  LlamaConfig m =
      hf("{\"model_type\":\"mistral\"," + base + ",\"max_position_embeddings\":32768,\"sliding_window\":4096}");
  CHECK(m.architecture == "mistral");
  CHECK(m.num_kv_heads == 4);
  CHECK(m.max_context == 4096);  // no more than the attention window
  CHECK_FALSE(m.qkv_bias);

  LlamaConfig l = hf("{\"architectures\":[\"LlamaForCausalLM\"]," + base +
                     R"(,"head_dim":32,"rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":32.0,)"
                     R"("low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}})");
  CHECK(l.head_dim == 32);
  CHECK(l.rope_theta == 500000.0f);
  CHECK(l.rope_scaling.type == "llama3");
  CHECK(l.rope_scaling.factor == 32.0f);
  CHECK(l.rope_scaling.original_max_position == 8192);

  auto fails = [&](const std::string& text, ModelErrc code, std::vector<std::string> parts) {
    parts.insert(parts.begin(), "config.json");
    expect_error([&] { hf(text); }, code, parts);
  };
  fails("{\"architectures\":[\"GPT2LMHeadModel\"]," + base + "}", ModelErrc::Unsupported,
        {"\"GPT2LMHeadModel\"", "LlamaForCausalLM", "Qwen2ForCausalLM"});
  fails("{\"model_type\":\"phi3\"," + base + "}", ModelErrc::Unsupported, {"\"phi3\"", "mistral"});
  fails("{\"model_type\":\"llama\"," + base + ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}",
        ModelErrc::Unsupported, {"rope_scaling", "\"yarn\""});
  fails("{\"model_type\":\"llama\"," + base + ",\"hidden_act\":\"gelu\"}", ModelErrc::Unsupported, {"\"gelu\""});
  fails("{\"model_type\":\"llama\",\"hidden_size\":64}", ModelErrc::Corrupt, {"\"intermediate_size\"", "missing"});
  fails("{\"model_type\":\"llama\"," + base + ",\"num_key_value_heads\":3}", ModelErrc::Corrupt,
        {"num_key_value_heads", "does not divide"});
  fails("{\"model_type\":\"llama\"," + base + ",\"head_dim\":\"x\"}", ModelErrc::Corrupt, {"\"head_dim\"", "\"x\""});
  fails("[]", ModelErrc::Corrupt, {"expected a JSON object"});
}

TEST_CASE("model config: GGUF metadata for llama and qwen2") {
  auto meta = [](const std::string& arch) {
    GgufBuilder g;
    g.str("general.architecture", arch);
    g.u32(arch + ".context_length", 4096);
    g.u32(arch + ".embedding_length", 64);
    g.u32(arch + ".block_count", 2);
    g.u32(arch + ".feed_forward_length", 128);
    g.u32(arch + ".attention.head_count", 4);
    g.u32(arch + ".attention.head_count_kv", 2);
    g.f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
    g.f32(arch + ".rope.freq_base", 1e6f);
    g.strings("tokenizer.ggml.tokens", {"a", "b", "c"});
    g.u32("tokenizer.ggml.eos_token_id", 2);
    return g;
  };
  Bytes qb = meta("qwen2").build();
  LlamaConfig q = config_from_gguf(parse_gguf(qb));
  CHECK(q.architecture == "qwen2");
  CHECK(q.rope_style == RopeStyle::HalfSplit);
  CHECK(q.qkv_bias);
  CHECK(q.vocab_size == 3);
  CHECK(q.head_dim == 16);
  CHECK(q.max_context == 4096);
  CHECK(q.rope_theta == 1e6f);
  CHECK(q.bos_token_id == -1);
  CHECK(q.eos_token_id == 2);

  Bytes lb = meta("llama").build();
  LlamaConfig l = config_from_gguf(parse_gguf(lb));
  CHECK(l.rope_style == RopeStyle::Interleaved);
  CHECK_FALSE(l.qkv_bias);

  SUBCASE("Llama 3 scaling is recovered from rope_freqs.weight") {
    GgufBuilder g = meta("llama");
    g.u32("llama.rope.scaling.original_context_length", 8192);
    // The converter's factors for theta 1e6, head_dim 16, factor 8, low 1, high 4, 8192.
    Bytes f;
    for (int k = 0; k < 8; ++k) {
      double wavelen = 2 * 3.14159265358979323846 * std::pow(1e6, 2.0 * k / 16);
      double smooth = (8192 / wavelen - 1) / 3;
      double x = wavelen < 2048 ? 1 : wavelen > 8192 ? 8 : 1 / ((1 - smooth) / 8 + smooth);
      put<float>(f, float(x));
    }
    g.tensor("rope_freqs.weight", {8}, 0, f);
    Bytes b = g.build();
    LlamaConfig c = config_from_gguf(parse_gguf(b));
    CHECK(c.rope_scaling.type == "llama3");
    CHECK(c.rope_scaling.factor == 8.0f);
    // Factors that follow no Llama 3 curve are refused rather than guessed at.
    poke<float>(b, b.size() - 4 * 7, 3.0f);
    expect_error([&] { config_from_gguf(parse_gguf(b)); }, ModelErrc::Unsupported, {"rope_freqs.weight"});
  }

  auto fails = [](const GgufBuilder& g, ModelErrc code, std::vector<std::string> parts) {
    Bytes b = g.build();
    parts.insert(parts.begin(), "t.gguf");
    expect_error([&] { config_from_gguf(parse_gguf(b)); }, code, parts);
  };
  fails(meta("gpt2"), ModelErrc::Unsupported, {"general.architecture", "\"gpt2\"", "llama, qwen2"});
  GgufBuilder none;
  fails(none, ModelErrc::Corrupt, {"general.architecture", "missing"});
  GgufBuilder g = meta("llama");
  g.u32("llama.rope.dimension_count", 8);
  fails(g, ModelErrc::Unsupported, {"llama.rope.dimension_count", "partial rotary"});
  g = meta("llama");
  g.str("llama.rope.scaling.type", "yarn");
  fails(g, ModelErrc::Unsupported, {"llama.rope.scaling.type", "\"yarn\""});
  g = meta("llama");
  g.str("llama.embedding_length", "64");  // a second value for a key: neither may win
  fails(g, ModelErrc::Corrupt, {"\"llama.embedding_length\"", "appears twice"});
  GgufBuilder s;
  s.str("general.architecture", "llama");
  s.str("llama.embedding_length", "64");
  fails(s, ModelErrc::Corrupt, {"llama.embedding_length", "expected an unsigned 32-bit integer, found string"});
}
