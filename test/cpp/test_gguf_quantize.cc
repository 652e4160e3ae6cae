// write_quantized_gguf: stories260K and hand-built files written as Q8_0 / Q4_0, re-parsed and checked
// against llama-quantize's rules and against reference quantizers written here from llama.cpp's
// published algorithms (ggml-quants.c quantize_row_q8_0_ref / quantize_row_q4_0_ref); then the
// written files are loaded and run.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "engine/cpu_executor.h"
#include "kv/kv_slab.h"
#include "model/generate.h"
#include "model/gguf.h"
#include "model/gguf_quantize.h"
#include "model/json.h"
#include "model/loader.h"
#include "model/file_bytes.h"
#include "golden_cases.h"
#include "model_test_files.h"

using namespace fineserve;
using model::DType;
using model::ModelErrc;
namespace mt = model::testing;

namespace {

// ---- reference encodings, independent of cpp/core/quant -----------------------------------------

// IEEE binary16, round to nearest even (what ggml's GGML_FP32_TO_FP16 does), for finite input.
uint16_t ref_f16(float f) {
  uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  double a = std::fabs(static_cast<double>(f));
  if (a == 0) return sign;
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exp = e - 1;    // a = 1.xxx * 2^exp
  if (exp < -14) {    // subnormal: multiples of 2^-24; a carry into 1024 is the smallest normal
    return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
  }
  double q = std::nearbyint(std::ldexp(a, 10 - exp));  // in [1024, 2048]
  if (q == 2048) {
    q = 1024;
    ++exp;
  }
  if (exp > 15) return sign | 0x7c00;
  return sign | static_cast<uint16_t>((exp + 15) << 10 | (static_cast<int>(q) - 1024));
}

float ref_f16_to_f32(uint16_t h) {
  int exp = (h >> 10) & 31, man = h & 1023;
  double v = exp == 0 ? std::ldexp(man, -24) : std::ldexp(1024 + man, exp - 25);
  return static_cast<float>((h & 0x8000) ? -v : v);
}

float ref_bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void put_f16(std::vector<uint8_t>& out, float f) {
  uint16_t h = ref_f16(f);
  out.push_back(static_cast<uint8_t>(h & 0xff));
  out.push_back(static_cast<uint8_t>(h >> 8));
}

// quantize_row_q8_0_ref: d = amax / 127 stored as f16, q = roundf(x * (1 / d)).
std::vector<uint8_t> ref_q8_0(const float* x, uint64_t n) {
  std::vector<uint8_t> out;
  for (uint64_t b = 0; b < n; b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(out, d);
    for (int j = 0; j < 32; ++j) out.push_back(static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[b + j] * id))));
  }
  return out;
}

// quantize_row_q4_0_ref: max = the value of largest magnitude (first one on ties), d = max / -8,
// q = min(15, (int8)(x / d + 8.5)); element j in the low nibble of byte j, element j + 16 in the high.
std::vector<uint8_t> ref_q4_0(const float* x, uint64_t n) {
  std::vector<uint8_t> out;
  for (uint64_t b = 0; b < n; b += 32) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      if (amax < std::fabs(x[b + j])) {
        amax = std::fabs(x[b + j]);
        max = x[b + j];
      }
    }
    const float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(out, d);
    for (int j = 0; j < 16; ++j) {
      int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[b + j] * id + 8.5f)));
      int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[b + 16 + j] * id + 8.5f)));
      out.push_back(static_cast<uint8_t>(lo | hi << 4));
    }
  }
  return out;
}

std::vector<float> ref_decode_q8_0(const uint8_t* p, uint64_t n) {
  std::vector<float> out;
  for (uint64_t b = 0; b < n / 32; ++b, p += 34) {
    float d = ref_f16_to_f32(static_cast<uint16_t>(p[0] | p[1] << 8));
    for (int j = 0; j < 32; ++j) out.push_back(d * static_cast<float>(static_cast<int8_t>(p[2 + j])));
  }
  return out;
}

// A tensor's values as f32, from the plain types and Q8_0.
std::vector<float> ref_decode(const model::TensorView& v) {
  const uint64_t n = v.elements();
  std::vector<float> out(n);
  if (v.dtype == DType::F32) {
    std::memcpy(out.data(), v.data, 4 * n);
  } else if (v.dtype == DType::F16 || v.dtype == DType::BF16) {
    for (uint64_t k = 0; k < n; ++k) {
      uint16_t h = static_cast<uint16_t>(v.data[2 * k] | v.data[2 * k + 1] << 8);
      out[k] = v.dtype == DType::F16 ? ref_f16_to_f32(h) : ref_bf16_to_f32(h);
    }
  } else if (v.dtype == DType::Q8_0) {
    out = ref_decode_q8_0(v.data, n);
  } else {
    FAIL("no reference decoding for " << model::dtype_name(v.dtype));
  }
  return out;
}

// What tensor `t` should become: the expected bytes, from the source's values.
std::vector<uint8_t> ref_encode(const std::vector<float>& x, DType type) {
  if (type == DType::Q8_0) return ref_q8_0(x.data(), x.size());
  if (type == DType::Q4_0) return ref_q4_0(x.data(), x.size());
  std::vector<uint8_t> out;
  if (type == DType::F16) {
    for (float f : x) put_f16(out, f);
  } else {
    FAIL("no reference encoding for " << model::dtype_name(type));
  }
  return out;
}

// ---- reading files back -------------------------------------------------------------------------

struct Parsed {
  model::FileBytes file;
  model::gguf::File gguf;
  explicit Parsed(const std::string& path)
      : file(path), gguf(model::gguf::parse(file.data(), file.size(), path)) {}
};

// Equal type and value, arrays element by element (numeric arrays as raw bytes).
bool same_value(const model::gguf::Value& a, const model::gguf::Value& b) {
  using model::gguf::ValueType;
  if (a.type != b.type) return false;
  switch (a.type) {
    case ValueType::String: return a.str == b.str;
    case ValueType::Float32:
    case ValueType::Float64: return std::memcmp(&a.f, &b.f, sizeof a.f) == 0;  // NaN payloads too
    case ValueType::Array:
      if (a.elem_type != b.elem_type || a.count != b.count) return false;
      if (a.elem_type == ValueType::String) return a.strings == b.strings;
      if (a.elem_type == ValueType::Array) {
        for (uint64_t k = 0; k < a.count; ++k) {
          if (!same_value(a.arrays[k], b.arrays[k])) return false;
        }
        return true;
      }
      return std::memcmp(a.packed, b.packed, a.count * model::gguf::value_type_size(a.elem_type)) == 0;
    default: return a.u == b.u && a.i == b.i;
  }
}

// Every source key, in the source's order and with the same value, except general.file_type; then
// whatever the writer appended, which may only be general.quantization_version and general.file_type.
void check_metadata(const model::gguf::File& src, const model::gguf::File& out, uint32_t file_type) {
  size_t k = 0;
  for (const auto& [key, value] : src.metadata) {
    CAPTURE(key);
    REQUIRE(k < out.metadata.size());
    CHECK(out.metadata[k].first == key);
    if (key == "general.file_type") {
      CHECK(out.metadata[k].second.u == file_type);
    } else {
      CHECK(same_value(value, out.metadata[k].second));
    }
    ++k;
  }
  for (; k < out.metadata.size(); ++k) {
    const std::string& key = out.metadata[k].first;
    CAPTURE(key);
    CHECK((key == "general.quantization_version" || key == "general.file_type"));
  }
  const model::gguf::Value* ft = out.find("general.file_type");
  REQUIRE(ft != nullptr);
  CHECK(ft->type == model::gguf::ValueType::UInt32);
  CHECK(ft->u == file_type);
  const model::gguf::Value* qv = out.find("general.quantization_version");
  REQUIRE(qv != nullptr);
  CHECK(qv->u == 2);  // ggml's GGML_QNT_VERSION
}

// Same tensors in the same order and shape; each in `expected(name)`, with the bytes the reference
// encoders give (or the source's bytes, for a tensor kept in its type).
template <class Expected>
void check_tensors(const model::gguf::File& src, const model::gguf::File& out, Expected expected) {
  REQUIRE(out.tensors.size() == src.tensors.size());
  for (size_t i = 0; i < src.tensors.size(); ++i) {
    const auto& s = src.tensors[i];
    const auto& o = out.tensors[i];
    CAPTURE(s.name);
    CHECK(o.name == s.name);
    CHECK(o.ne == s.ne);
    DType want = expected(s);
    CHECK(model::dtype_name(o.dtype) == std::string(model::dtype_name(want)));
    CHECK(o.offset % out.alignment == 0);
    model::TensorView sv = src.view(s), ov = out.view(o);
    std::vector<uint8_t> bytes(ov.data, ov.data + ov.bytes);
    if (want == s.dtype) {
      CHECK(bytes == std::vector<uint8_t>(sv.data, sv.data + sv.bytes));
    } else {
      CHECK(bytes == ref_encode(ref_decode(sv), want));
    }
  }
}

// ---- greedy generation, as test_forward_golden.cc drives the executor ---------------------------

using model::testing::GoldenCase;
using model::testing::golden_cases;

// Greedy continuation of `prompt` (to `max_new` tokens or BOS/EOS), one sequence at a time.
std::vector<int32_t> greedy(const std::string& path, const std::vector<int32_t>& prompt, size_t max_new) {
  std::unique_ptr<model::LoadedModel> m = model::load_model(path);
  kv::KvSlab pool{kv::KvSlabOptions{16ull << 20, 1ull << 20, 0.125, "host"}};
  kv::ModelId id = pool.add_model({"m", engine::kv_geometry_for(m->config, kv::KvFormat::F32, 16), 0, 0});
  auto exec = engine::make_cpu_executor(*m, pool, id, {kv::KvFormat::F32, 1, nullptr});
  std::vector<kv::BlockId> blocks;
  REQUIRE(pool.alloc(id, static_cast<uint32_t>((prompt.size() + max_new + 15) / 16), &blocks).ok);
  std::vector<int32_t> tokens = prompt;
  engine::SamplingParams params;
  engine::SamplerState state;
  state.reset(exec->vocab_size(), tokens.data(), static_cast<uint32_t>(tokens.size()));
  size_t cached = 0;
  while (tokens.size() - prompt.size() < max_new) {
    engine::SequenceChunk c;
    c.n_tokens = static_cast<uint32_t>(tokens.size() - cached);
    c.tokens = tokens.data() + cached;
    c.position = static_cast<uint32_t>(cached);
    c.block_table = blocks.data();
    c.n_blocks = static_cast<uint32_t>(blocks.size());
    c.sample = true;
    c.sampling = &params;
    c.sampler_state = &state;
    engine::StepOutput out = exec->step({c}, false);
    cached = tokens.size();
    int32_t t = out.samples[0].token;
    if (t == 1 || t == 2) break;
    tokens.push_back(t);
  }
  return {tokens.begin() + static_cast<long>(prompt.size()), tokens.end()};
}

bool no_file_left(const mt::TempDir& dir) { return std::filesystem::is_empty(dir.path); }

// stories260K under llama-quantize's rules: norms stay F32, ffn_down (rows of 172) cannot be
// blocks of 32 and stays F32, output.weight is Q8_0 (Q6_K in llama-quantize's Q4_0 files).
DType stories_type(const model::gguf::TensorInfo& t, DType target) {
  if (t.ne.size() == 1) return DType::F32;
  if (t.name.find("ffn_down") != std::string::npos) return DType::F32;
  if (t.name == "output.weight") return DType::Q8_0;
  return target;
}

}  // namespace

TEST_CASE("gguf quantize: stories260K as Q8_0 and Q4_0 keeps the metadata and matches the reference blocks") {
  const std::string src = mt::require_fixture("stories260K.gguf").string();
  Parsed in(src);
  for (DType target : {DType::Q8_0, DType::Q4_0}) {
    const std::string target_name = model::dtype_name(target);
    CAPTURE(target_name);
    mt::TempDir dir;
    const std::string dst = (dir / "out.gguf").string();
    std::vector<double> reports;
    model::QuantizeGgufResult r = model::write_quantized_gguf(src, dst, target, [&](double f) {
      reports.push_back(f);
      return true;
    });
    CHECK(r.path == dst);
    CHECK(r.bytes == std::filesystem::file_size(dst));
    CHECK(!std::filesystem::exists(dst + ".part"));
    REQUIRE(!reports.empty());
    CHECK(std::is_sorted(reports.begin(), reports.end()));
    CHECK(reports.back() == 1.0);

    Parsed out(dst);
    check_metadata(in.gguf, out.gguf, target == DType::Q8_0 ? 7 : 2);
    CHECK(out.gguf.find("general.alignment") == nullptr);  // the source has none: 32 is implied
    check_tensors(in.gguf, out.gguf, [&](const model::gguf::TensorInfo& t) { return stories_type(t, target); });

    // 5 layers x (q, k, v, o, gate, up) + token_embd (+ output in a Q8_0 file); kept: 11 norms and
    // 5 ffn_down (+ output as Q8_0 in a Q4_0 file).
    CHECK(r.quantized.size() == (target == DType::Q8_0 ? 32u : 31u));
    CHECK(r.kept.size() == (target == DType::Q8_0 ? 16u : 17u));
    for (const model::GgufTensorType& k : r.kept) {
      CAPTURE(k.name);
      CHECK(k.type == stories_type(*in.gguf.find_tensor(k.name), target));
    }
  }
}

TEST_CASE("gguf quantize: metadata of every type, alignment 64, F16/BF16/Q8_0 sources, tied embeddings") {
  // A hand-built file: keys of the types stories260K lacks (u8, i64, f64, bool, arrays of arrays),
  // general.file_type and general.alignment present, no output.weight.
  mt::GgufBuilder g;
  g.alignment = 64;
  g.u32("general.alignment", 64);
  g.str("general.architecture", "llama");
  g.key("general.file_type", 4);
  mt::put<uint32_t>(g.kv, 1);
  g.key("x.u8", 0);
  mt::put<uint8_t>(g.kv, 200);
  g.key("x.i64", 11);
  mt::put<int64_t>(g.kv, -(int64_t{1} << 40));
  g.key("x.f64", 12);
  mt::put<double>(g.kv, 0.1);
  g.key("x.bool", 7);
  mt::put<uint8_t>(g.kv, 1);
  g.key("x.nested", 9);  // [[1, 2], []] of i16
  mt::put<uint32_t>(g.kv, 9);
  mt::put<uint64_t>(g.kv, 2);
  mt::put<uint32_t>(g.kv, 3);
  mt::put<uint64_t>(g.kv, 2);
  mt::put<int16_t>(g.kv, 1);
  mt::put<int16_t>(g.kv, 2);
  mt::put<uint32_t>(g.kv, 3);
  mt::put<uint64_t>(g.kv, 0);
  g.strings("x.tokens", {"a", "", "\xe2\x96\x81" "b"});

  // Deterministic values of a few magnitudes, with ties for Q4_0's first-largest rule.
  auto values = [](uint64_t n, float scale) {
    std::vector<float> v(n);
    for (uint64_t k = 0; k < n; ++k) v[k] = scale * std::sin(0.37f * static_cast<float>(k) + 1.0f);
    v[5] = scale;
    v[6] = -scale;
    return v;
  };
  auto f16_bytes = [](const std::vector<float>& v) {
    std::vector<uint8_t> b;
    for (float f : v) put_f16(b, f);
    return b;
  };
  auto bf16_bytes = [](const std::vector<float>& v) {
    std::vector<uint8_t> b;
    for (float f : v) {
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      b.push_back(static_cast<uint8_t>(bits >> 16));
      b.push_back(static_cast<uint8_t>(bits >> 24));
    }
    return b;
  };
  g.tensor("token_embd.weight", {64, 8}, 1, f16_bytes(values(512, 0.5f)));       // F16, tied
  g.f32_tensor("blk.0.attn_norm.weight", {64}, 1.0f);
  g.tensor("blk.0.attn_q.weight", {96, 4}, 30, bf16_bytes(values(384, 2.0f)));   // BF16
  g.tensor("blk.0.ffn_down.weight", {48, 4}, 30, bf16_bytes(values(192, 3.0f))); // 48: no blocks
  g.tensor("blk.0.ffn_up.weight", {48, 2}, 1, f16_bytes(values(96, 3.0f)));      // F16, 48
  std::vector<float> q8_src = values(256, 0.25f);
  g.tensor("blk.0.attn_k.weight", {64, 4}, 8, ref_q8_0(q8_src.data(), q8_src.size()));  // Q8_0
  std::vector<float> f32_src = values(64 * 3, 1e-3f);
  mt::Bytes f32_bytes(f32_src.size() * 4);
  std::memcpy(f32_bytes.data(), f32_src.data(), f32_bytes.size());
  g.tensor("blk.0.attn_v.weight", {64, 3}, 0, f32_bytes);  // F32
  g.tensor("blk.0.attn_output.weight", {33, 2}, 0, mt::Bytes(33 * 2 * 4, 0));  // F32, 33: kept

  mt::TempDir dir;
  const std::string src = (dir / "src.gguf").string();
  mt::write_bytes(src, g.build());
  Parsed in(src);
  REQUIRE(in.gguf.alignment == 64);

  for (DType target : {DType::Q8_0, DType::Q4_0}) {
    const std::string target_name = model::dtype_name(target);
    CAPTURE(target_name);
    const std::string dst = (dir / (std::string(model::dtype_name(target)) + ".gguf")).string();
    model::write_quantized_gguf(src, dst, target);
    Parsed out(dst);
    CHECK(out.gguf.alignment == 64);
    CHECK(out.gguf.data_offset % 64 == 0);
    check_metadata(in.gguf, out.gguf, target == DType::Q8_0 ? 7 : 2);
    check_tensors(in.gguf, out.gguf, [&](const model::gguf::TensorInfo& t) {
      if (t.name == "blk.0.attn_norm.weight") return DType::F32;
      if (t.name == "token_embd.weight") return DType::Q8_0;  // the output projection when tied
      if (t.name == "blk.0.ffn_down.weight") return DType::BF16;  // 48 columns: kept as is
      if (t.name == "blk.0.ffn_up.weight") return DType::F16;
      if (t.name == "blk.0.attn_output.weight") return DType::F32;  // 33 columns: kept as is
      return target;
    });
  }
}

TEST_CASE("gguf quantize: cancelling, bad input and bad targets leave no file") {
  const std::string src = mt::require_fixture("stories260K.gguf").string();
  mt::TempDir dir;
  const std::string dst = (dir / "out.gguf").string();
  for (int stop_after : {0, 3}) {
    CAPTURE(stop_after);
    int calls = 0;
    mt::expect_error([&] { model::write_quantized_gguf(src, dst, DType::Q4_0, [&](double) { return calls++ < stop_after; }); },
                     ModelErrc::Cancelled, {"cancelled", src});
    CHECK(no_file_left(dir));
  }
  mt::expect_error([&] { model::write_quantized_gguf((dir / "missing.gguf").string(), dst, DType::Q8_0); },
                   ModelErrc::NotFound, {"missing.gguf"});
  CHECK_THROWS_AS(model::write_quantized_gguf(src, dst, DType::W4A16), std::invalid_argument);
  CHECK_THROWS_AS(model::write_quantized_gguf(src, dst, DType::F16), std::invalid_argument);
  CHECK(no_file_left(dir));

  // A NaN in a weight being quantized names the tensor and the element.
  mt::TempDir bad_dir;
  mt::GgufBuilder g;
  g.str("general.architecture", "llama");
  mt::Bytes nan_row(64 * 4, 0);
  mt::poke(nan_row, 4 * 40, std::numeric_limits<float>::quiet_NaN());
  g.tensor("blk.0.attn_q.weight", {64, 1}, 0, nan_row);
  const std::string bad = (bad_dir / "nan.gguf").string();
  mt::write_bytes(bad, g.build());
  mt::expect_error([&] { model::write_quantized_gguf(bad, (bad_dir / "out.gguf").string(), DType::Q8_0); },
                   ModelErrc::BadWeights, {"nan.gguf", "blk.0.attn_q.weight", "row 0 column 40"});
  CHECK(!std::filesystem::exists(bad_dir / "out.gguf"));
  CHECK(!std::filesystem::exists(bad_dir / "out.gguf.part"));
}

TEST_CASE("gguf quantize: a generated llama-100m-shaped model round-trips and loads") {
  mt::TempDir dir;
  model::GenerateOptions o;
  o.shape = "llama-100m";
  o.layers = 1;
  o.vocab = 512;
  o.dtype = DType::F16;
  o.seed = 7;
  o.out = (dir / "f16.gguf").string();
  model::generate_model(o);
  Parsed in(o.out);
  for (DType target : {DType::Q8_0, DType::Q4_0}) {
    const std::string target_name = model::dtype_name(target);
    CAPTURE(target_name);
    const std::string dst = (dir / (std::string(model::dtype_name(target)) + ".gguf")).string();
    auto t0 = std::chrono::steady_clock::now();
    model::QuantizeGgufResult r = model::write_quantized_gguf(o.out, dst, target);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE(target_name << ": " << in.file.size() << " -> " << r.bytes << " bytes in " << ms << " ms");
    Parsed out(dst);
    check_metadata(in.gguf, out.gguf, target == DType::Q8_0 ? 7 : 2);
    // Every matrix of this shape has rows of 768 or 2048: all are blocks; output.weight is Q8_0.
    check_tensors(in.gguf, out.gguf, [&](const model::gguf::TensorInfo& t) {
      if (t.ne.size() == 1) return DType::F32;
      return t.name == "output.weight" ? DType::Q8_0 : target;
    });
    std::unique_ptr<model::LoadedModel> m = model::load_model(dst);
    CHECK(m->config.hidden_size == 768);
    CHECK(m->config.num_layers == 1);
    CHECK(m->weights.layers[0].w_down.dtype == target);
    CHECK(m->weights.output.dtype == DType::Q8_0);
    CHECK(m->weights.output_norm.dtype == DType::F32);
  }
}

TEST_CASE("gguf quantize: stories260K written as Q8_0 / Q4_0 loads and continues the golden prompts") {
  const std::string src = mt::require_fixture("stories260K.gguf").string();
  std::vector<GoldenCase> cases = golden_cases();
  mt::TempDir dir;
  for (DType target : {DType::Q8_0, DType::Q4_0}) {
    const std::string target_name = model::dtype_name(target);
    CAPTURE(target_name);
    const std::string dst = (dir / "m.gguf").string();
    model::write_quantized_gguf(src, dst, target);
    size_t same = 0, total = 0, first_same = 0, prefix = 0;
    for (const GoldenCase& g : cases) {
      std::vector<int32_t> got = greedy(dst, g.prompt, g.greedy.size());
      size_t p = 0;
      while (p < got.size() && p < g.greedy.size() && got[p] == g.greedy[p]) ++p;
      prefix += p;
      for (size_t k = 0; k < std::min(got.size(), g.greedy.size()); ++k) same += got[k] == g.greedy[k];
      total += g.greedy.size();
      first_same += !got.empty() && got[0] == g.greedy[0];
    }
    MESSAGE(target_name << ": " << same << " of " << total << " golden greedy tokens at the same position, "
                                      << prefix << " in the agreeing prefixes, first token " << first_same << "/"
                                      << cases.size());
    // Q8_0 rounds each weight by at most half a step of amax/127 per block of 32, and activations
    // are Q8_0 too (as in llama.cpp), so the logits move slightly: the first token after each
    // prompt must survive, but later a near-tie can flip and the continuation part from the golden
    // one. Measured: 219 of 256 tokens agree (218 before the first difference); the bound is "most",
    // i.e. more than half. Q4_0 (measured: 82 of 256, first tokens 4/4) is only reported.
    if (target == DType::Q8_0) {
      CHECK(first_same == cases.size());
      CHECK(2 * same > total);
    }
  }
}
