// The Q4_K and Q6_K quantizers (quant/kquant_quantize.cc) and the Q4_K_M mix of the GGUF writer:
//   - blocks built by hand from known codes and power-of-two scales (exactly representable) come
//     back bit for bit: the encoder writes the layout the existing reader (dequantize_row) and a
//     packer written here from the format description agree on;
//   - on random rows the round-trip error, measured in float64, is below that of a plain
//     min/max round-to-nearest encoding of the same format computed in float64 (the search must
//     not lose to the method it refines), with measured bounds;
//   - llama-quantize's per-tensor rules of Q4_K_M / Q4_K / Q6_K files on hand-built files of 8 and
//     32 layers and odd row lengths (the layers that get Q6_K are listed by hand from llama.cpp's
//     use_more_bits), and a generated model written as Q4_K_M loads with the types it was given.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "model/generate.h"
#include "model/gguf.h"
#include "model/gguf_quantize.h"
#include "model/file_bytes.h"
#include "model/loader.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "model_test_files.h"

using namespace fineserve;
using model::DType;
namespace mt = model::testing;

namespace {

std::vector<float> decode(DType t, const std::vector<uint8_t>& bytes, uint64_t cols) {
  std::vector<float> out(cols);
  quant::dequantize_row(t, bytes.data(), cols, 0, out.data());
  return out;
}

std::vector<uint8_t> encode(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> out(quant::row_bytes(t, x.size()));
  quant::quantize_row(t, x.data(), x.size(), 0, out.data());
  return out;
}

void put_f16_exact(uint8_t* p, int exp2) {  // 2^exp2 as binary16, normal range only
  const uint16_t h = static_cast<uint16_t>((exp2 + 15) << 10);
  p[0] = static_cast<uint8_t>(h & 0xff);
  p[1] = static_cast<uint8_t>(h >> 8);
}

// ---- hand-built blocks: codes and scales chosen so every value is exact in float -----------------

// Q4_K super-block: sub-block j has scale c[j] * 2^-6 and min e[j] * 2^-7 (c, e <= 63, both
// reaching 63, so d = 2^-6 and dmin = 2^-7 exactly), and codes covering 0 and 15.
struct Q4kCase {
  int c[8], e[8];
  uint8_t q[256];
};

std::vector<float> q4k_values(const Q4kCase& k) {
  std::vector<float> x(256);
  for (int i = 0; i < 256; ++i) x[i] = std::ldexp(static_cast<float>(k.c[i / 32] * k.q[i]), -6) - std::ldexp(static_cast<float>(k.e[i / 32]), -7);
  return x;
}

// Packs the case as weight_format.h describes Q4_K (written independently of the encoder).
std::vector<uint8_t> q4k_pack(const Q4kCase& k) {
  std::vector<uint8_t> b(144, 0);
  put_f16_exact(&b[0], -6);
  put_f16_exact(&b[2], -7);
  uint8_t* s = &b[4];
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] |= static_cast<uint8_t>(k.c[j] & 63);
      s[j + 4] |= static_cast<uint8_t>(k.e[j] & 63);
    } else {
      s[j + 4] |= static_cast<uint8_t>((k.c[j] & 15) | (k.e[j] & 15) << 4);
      s[j - 4] |= static_cast<uint8_t>((k.c[j] >> 4) << 6);
      s[j] |= static_cast<uint8_t>((k.e[j] >> 4) << 6);
    }
  }
  for (int i = 0; i < 256; ++i) {
    const int sub = i / 32, l = i % 32;  // sub-blocks 2p, 2p + 1 share qs[32p ..]
    b[16 + 32 * (sub / 2) + l] |= static_cast<uint8_t>(sub % 2 == 0 ? k.q[i] : k.q[i] << 4);
  }
  return b;
}

// Q6_K super-block: sub-block j of 16 has scale 2^-(4 + p[j]) (p[j] in 0..2, some 0, so d = -2^-11
// and the int8 scales are -128 >> p[j]), codes q in -32..31 with -32 in each sub-block.
struct Q6kCase {
  int p[16];
  int q[256];
};

std::vector<float> q6k_values(const Q6kCase& k) {
  std::vector<float> x(256);
  for (int i = 0; i < 256; ++i) x[i] = std::ldexp(static_cast<float>(k.q[i]), -(4 + k.p[i / 16]));
  return x;
}

std::vector<uint8_t> q6k_pack(const Q6kCase& k) {
  std::vector<uint8_t> b(210, 0);
  for (int i = 0; i < 256; ++i) {
    // Within half h = i / 128, element r = i % 128: its 4 low bits go to ql[64h + r % 64], low
    // nibble for r < 64, high nibble otherwise; its 2 high bits to qh[32h + r % 32] at 2 * (r / 32).
    const int h = i / 128, r = i % 128, u = k.q[i] + 32;
    b[64 * h + r % 64] |= static_cast<uint8_t>(r < 64 ? (u & 15) : (u & 15) << 4);
    b[128 + 32 * h + r % 32] |= static_cast<uint8_t>((u >> 4) << (2 * (r / 32)));
  }
  for (int j = 0; j < 16; ++j) b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(-(128 >> k.p[j])));
  const uint16_t d = 0x8000 | static_cast<uint16_t>((-11 + 15) << 10);  // -2^-11
  b[208] = static_cast<uint8_t>(d & 0xff);
  b[209] = static_cast<uint8_t>(d >> 8);
  return b;
}

// ---- float64 references: plain min/max round-to-nearest in the same formats ----------------------

double q4k_naive_sq_error(const float* x) {
  double scale[8], mn[8], max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    double lo = 0, hi = x[32 * j];
    for (int l = 0; l < 32; ++l) {
      lo = std::min(lo, double(x[32 * j + l]));
      hi = std::max(hi, double(x[32 * j + l]));
    }
    scale[j] = (hi - lo) / 15;
    mn[j] = -lo;
    max_scale = std::max(max_scale, scale[j]);
    max_min = std::max(max_min, mn[j]);
  }
  const double d = max_scale / 63, dmin = max_min / 63;
  double err = 0;
  for (int j = 0; j < 8; ++j) {
    const double ds = d * std::min(63.0, std::nearbyint(scale[j] / (d > 0 ? d : 1)));
    const double dm = dmin * std::min(63.0, std::nearbyint(mn[j] / (dmin > 0 ? dmin : 1)));
    for (int l = 0; l < 32; ++l) {
      const double v = x[32 * j + l];
      const double q = ds > 0 ? std::clamp(std::nearbyint((v + dm) / ds), 0.0, 15.0) : 0;
      err += (ds * q - dm - v) * (ds * q - dm - v);
    }
  }
  return err;
}

double q6k_naive_sq_error(const float* x) {
  double scale[16], max_scale = 0;
  for (int j = 0; j < 16; ++j) {
    double amax = 0;
    for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(double(x[16 * j + l])));
    scale[j] = amax / 31;
    max_scale = std::max(max_scale, scale[j]);
  }
  const double d = max_scale / 127;
  double err = 0;
  for (int j = 0; j < 16; ++j) {
    const double ds = d * (d > 0 ? std::nearbyint(scale[j] / d) : 0);
    for (int l = 0; l < 16; ++l) {
      const double v = x[16 * j + l];
      const double q = ds > 0 ? std::clamp(std::nearbyint(v / ds), -32.0, 31.0) : 0;
      err += (ds * q - v) * (ds * q - v);
    }
  }
  return err;
}

// Rows of several kinds: gaussian, heavy-tailed with outliers, all positive, a zero sub-block.
std::vector<float> random_row(std::mt19937& rng, int kind, uint64_t cols) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> x(cols);
  for (uint64_t i = 0; i < cols; ++i) {
    float v = normal(rng);
    if (kind == 1 && uniform(rng) < 0.01f) v *= 20.0f;
    if (kind == 2) v = std::fabs(v) + 0.01f;
    if (kind == 3 && (i / 32) % 8 == 3) v = 0.0f;
    x[i] = v;
  }
  return x;
}

// ---- the mix rules ------------------------------------------------------------------------------

struct Layerwise {
  std::string name;
  std::vector<uint64_t> ne;
};

// A llama-shaped GGUF of `layers` layers whose matrices have rows of `cols` (ffn_down: `down_cols`);
// values are a ramp so every block is non-trivial.
std::string build_llama_like(const mt::TempDir& dir, int layers, uint64_t cols, uint64_t down_cols, bool tied) {
  mt::GgufBuilder g;
  g.str("general.architecture", "llama");
  auto matrix = [&](const std::string& name, uint64_t c) {
    std::vector<float> v(c * 2);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * std::sin(0.1f * static_cast<float>(i) + static_cast<float>(name.size()));
    mt::Bytes b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    g.tensor(name, {c, 2}, 0, b);
  };
  matrix("token_embd.weight", cols);
  for (int i = 0; i < layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    g.f32_tensor(p + "attn_norm.weight", {cols}, 1.0f);
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"}) matrix(p + m + ".weight", cols);
    matrix(p + "ffn_down.weight", down_cols);
    g.f32_tensor(p + "ffn_norm.weight", {cols}, 1.0f);
  }
  g.f32_tensor("output_norm.weight", {cols}, 1.0f);
  if (!tied) matrix("output.weight", cols);
  const std::string path = (dir / ("llama-" + std::to_string(layers) + "-" + std::to_string(cols) + ".gguf")).string();
  mt::write_bytes(path, g.build());
  return path;
}

std::map<std::string, DType> types_of(const std::string& path, model::GgufQuantType type) {
  model::FileBytes f(path);
  model::gguf::File in = model::gguf::parse(f.data(), f.size(), path);
  std::vector<DType> types = model::gguf_quantized_types(in, type);
  std::map<std::string, DType> out;
  for (size_t i = 0; i < in.tensors.size(); ++i) out[in.tensors[i].name] = types[i];
  return out;
}

std::string type_name(DType t) { return model::dtype_name(t); }

}  // namespace

TEST_CASE("kquant: hand-built Q4_K and Q6_K blocks encode to the layout the reader decodes, bit for bit") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    CAPTURE(trial);
    Q4kCase k{};
    for (int j = 0; j < 8; ++j) {
      k.c[j] = 1 + static_cast<int>(rng() % 63);
      k.e[j] = static_cast<int>(rng() % 64);
    }
    k.c[rng() % 8] = 63;
    k.e[rng() % 8] = 63;
    for (int j = 0; j < 8; ++j) {
      if (k.e[j] == 0) k.e[j] = 1;  // a zero min would let the search drop the offset: min > 0 is clamped
    }
    for (int i = 0; i < 256; ++i) k.q[i] = static_cast<uint8_t>(rng() % 16);
    for (int j = 0; j < 8; ++j) {
      k.q[32 * j + rng() % 32] = 0;
      k.q[32 * j + 16 + rng() % 16] = 15;
    }
    const std::vector<float> x = q4k_values(k);
    const std::vector<uint8_t> bytes = encode(DType::Q4_K, x);
    CHECK(bytes == q4k_pack(k));
    CHECK(decode(DType::Q4_K, bytes, 256) == x);

    Q6kCase s{};
    for (int j = 0; j < 16; ++j) s.p[j] = static_cast<int>(rng() % 3);
    s.p[rng() % 16] = 0;
    for (int i = 0; i < 256; ++i) s.q[i] = static_cast<int>(rng() % 64) - 32;
    for (int j = 0; j < 16; ++j) s.q[16 * j + rng() % 16] = -32;
    const std::vector<float> y = q6k_values(s);
    const std::vector<uint8_t> b6 = encode(DType::Q6_K, y);
    CHECK(b6 == q6k_pack(s));
    CHECK(decode(DType::Q6_K, b6, 256) == y);
  }
}

TEST_CASE("kquant: round-trip error on random rows beats plain round-to-nearest (float64)") {
  std::mt19937 rng(5);
  const uint64_t cols = 1024;
  for (int kind = 0; kind < 4; ++kind) {
    CAPTURE(kind);
    double sum_x2 = 0, ours4 = 0, naive4 = 0, ours6 = 0, naive6 = 0, max4 = 0, max6 = 0, amax = 0;
    for (int row = 0; row < 64; ++row) {
      const std::vector<float> x = random_row(rng, kind, cols);
      const std::vector<float> y4 = decode(DType::Q4_K, encode(DType::Q4_K, x), cols);
      const std::vector<float> y6 = decode(DType::Q6_K, encode(DType::Q6_K, x), cols);
      for (uint64_t i = 0; i < cols; ++i) {
        const double v = x[i];
        sum_x2 += v * v;
        amax = std::max(amax, std::fabs(v));
        ours4 += (y4[i] - v) * (y4[i] - v);
        ours6 += (y6[i] - v) * (y6[i] - v);
        max4 = std::max(max4, std::fabs(y4[i] - v));
        max6 = std::max(max6, std::fabs(y6[i] - v));
        if (kind == 3 && (i / 32) % 8 == 3) {
          CHECK(y4[i] == 0.0f);  // an all-zero sub-block decodes to zeros (min 0, any codes)
          CHECK(y6[i] == 0.0f);
        }
      }
      for (uint64_t b = 0; b < cols; b += 256) {
        naive4 += q4k_naive_sq_error(x.data() + b);
        naive6 += q6k_naive_sq_error(x.data() + b);
      }
    }
    const double rel4 = std::sqrt(ours4 / sum_x2), rel6 = std::sqrt(ours6 / sum_x2);
    MESSAGE("kind " << kind << ": Q4_K relative RMSE " << rel4 << " (plain " << std::sqrt(naive4 / sum_x2)
                    << "), max |err| / amax " << max4 / amax << "; Q6_K " << rel6 << " (plain "
                    << std::sqrt(naive6 / sum_x2) << "), max " << max6 / amax);
    CHECK(ours4 < naive4);
    CHECK(ours6 < naive6);
    // A 4-bit code over a sub-block's range (+ the 6-bit scale rounding) and a 6-bit one; the
    // largest error stays within about half a step of the row's largest sub-block (measured
    // relative RMSE 0.035-0.099 and 0.015-0.032, largest error 0.031-0.056 and 0.014-0.015 x amax).
    CHECK(rel4 < 0.12);
    CHECK(rel6 < 0.04);
    CHECK(max4 < 0.07 * amax);
    CHECK(max6 < 0.02 * amax);
  }
}

TEST_CASE("kquant: Q4_K_M, Q4_K and Q6_K files choose types by llama-quantize's rules") {
  mt::TempDir dir;
  // 8 layers: use_more_bits(i, 8) holds for i < 1, i >= 7, (i - 1) % 3 == 2, i.e. 0, 3, 6, 7.
  // 32 layers (a 7B): i < 4, i >= 28, (i - 4) % 3 == 2: 0-3, 6, 9, ..., 27, 28-31.
  std::set<int> more8 = {0, 3, 6, 7};
  std::set<int> more32 = {0, 1, 2, 3, 28, 29, 30, 31};
  for (int i = 6; i <= 27; i += 3) more32.insert(i);
  for (auto [layers, more] : {std::pair{8, more8}, std::pair{32, more32}}) {
    CAPTURE(layers);
    const std::string path = build_llama_like(dir, layers, 256, 512, false);
    std::map<std::string, DType> t = types_of(path, model::GgufQuantType::Q4_K_M);
    CHECK(type_name(t["token_embd.weight"]) == "Q4_K");
    CHECK(type_name(t["output.weight"]) == "Q6_K");
    CHECK(type_name(t["output_norm.weight"]) == "F32");
    for (int i = 0; i < layers; ++i) {
      CAPTURE(i);
      const std::string p = "blk." + std::to_string(i) + ".";
      const std::string hi = more.count(i) ? "Q6_K" : "Q4_K";
      CHECK(type_name(t[p + "attn_v.weight"]) == hi);
      CHECK(type_name(t[p + "ffn_down.weight"]) == hi);
      for (const char* m : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"}) CHECK(type_name(t[p + m + ".weight"]) == "Q4_K");
      CHECK(type_name(t[p + "attn_norm.weight"]) == "F32");
    }
    std::map<std::string, DType> k4 = types_of(path, model::GgufQuantType::Q4_K);
    std::map<std::string, DType> k6 = types_of(path, model::GgufQuantType::Q6_K);
    for (const auto& [name, type] : k4) {
      CAPTURE(name);
      const bool norm = name.find("norm") != std::string::npos;
      CHECK(type_name(type) == (norm ? "F32" : name == "output.weight" ? "Q6_K" : "Q4_K"));
      CHECK(type_name(k6[name]) == (norm ? "F32" : "Q6_K"));
    }
  }
  // Rows that are not whole super-blocks: 96 (blocks of 32) -> Q8_0, llama-quantize's Q6_K
  // fallback and our stand-in for its Q5_0; 48 (not even blocks of 32) keeps its source type.
  // Tied embeddings: token_embd.weight is the output projection.
  const std::string odd = build_llama_like(dir, 2, 96, 48, true);
  std::map<std::string, DType> t = types_of(odd, model::GgufQuantType::Q4_K_M);
  CHECK(t.count("output.weight") == 0);
  CHECK(type_name(t["token_embd.weight"]) == "Q8_0");
  for (int i = 0; i < 2; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    CHECK(type_name(t[p + "attn_v.weight"]) == "Q8_0");
    CHECK(type_name(t[p + "attn_q.weight"]) == "Q8_0");
    CHECK(type_name(t[p + "ffn_down.weight"]) == "F32");
  }
  const std::string tied256 = build_llama_like(dir, 2, 256, 256, true);
  CHECK(type_name(types_of(tied256, model::GgufQuantType::Q4_K_M)["token_embd.weight"]) == "Q6_K");

  // The written file: file type 15, every tensor in its type, with the bytes quantize_row makes
  // from the source's values.
  const std::string src = build_llama_like(dir, 8, 256, 512, false);
  const std::string dst = (dir / "q4_k_m.gguf").string();
  model::QuantizeGgufResult r = model::write_quantized_gguf(src, dst, model::GgufQuantType::Q4_K_M);
  model::FileBytes fi(src), fo(dst);
  model::gguf::File in = model::gguf::parse(fi.data(), fi.size(), src);
  model::gguf::File out = model::gguf::parse(fo.data(), fo.size(), dst);
  REQUIRE(out.find("general.file_type") != nullptr);
  CHECK(out.find("general.file_type")->u == 15);
  std::map<std::string, DType> want = types_of(src, model::GgufQuantType::Q4_K_M);
  size_t q4 = 0;
  REQUIRE(out.tensors.size() == in.tensors.size());
  for (size_t i = 0; i < in.tensors.size(); ++i) {
    const auto& o = out.tensors[i];
    CAPTURE(o.name);
    CHECK(o.dtype == want[o.name]);
    q4 += o.dtype == DType::Q4_K;
    model::TensorView sv = in.view(in.tensors[i]), ov = out.view(o);
    const uint64_t cols = o.ne[0], rows = sv.elements() / cols;
    for (uint64_t row = 0; row < rows; ++row) {
      std::vector<float> x(cols);
      quant::dequantize_row(sv.dtype, sv.data + row * quant::row_bytes(sv.dtype, cols), cols, 0, x.data());
      std::vector<uint8_t> expect = sv.dtype == o.dtype ? std::vector<uint8_t>(sv.data + row * cols * 4, sv.data + (row + 1) * cols * 4)
                                                         : encode(o.dtype, x);
      const uint64_t rb = quant::row_bytes(o.dtype, cols);
      CHECK(std::vector<uint8_t>(ov.data + row * rb, ov.data + (row + 1) * rb) == expect);
    }
  }
  CHECK(r.quantized.size() == q4);
  CHECK(r.quantized.size() + r.kept.size() == in.tensors.size());
}

TEST_CASE("kquant: a generated llama-100m-shaped model written as Q4_K_M loads with the mix's types") {
  mt::TempDir dir;
  model::GenerateOptions o;
  o.shape = "llama-100m";
  o.layers = 2;
  o.vocab = 512;
  o.dtype = DType::F16;
  o.seed = 3;
  o.out = (dir / "f16.gguf").string();
  model::generate_model(o);
  const std::string dst = (dir / "q4_k_m.gguf").string();
  model::write_quantized_gguf(o.out, dst, model::GgufQuantType::Q4_K_M);
  std::unique_ptr<model::LoadedModel> m = model::load_model(dst);
  // 2 layers: use_more_bits(i, 2) holds for i >= 7 * 2 / 8 = 1 only.
  CHECK(type_name(m->weights.layers[0].w_down.dtype) == "Q4_K");
  CHECK(type_name(m->weights.layers[1].w_down.dtype) == "Q6_K");
  CHECK(type_name(m->weights.layers[0].wq.dtype) == "Q4_K");
  CHECK(type_name(m->weights.output.dtype) == "Q6_K");
}
