#include "model/generate.h"

#include <cmath>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "model/generate_files.h"
#include "model/gguf_writer.h"
#include "model/model_error.h"
#include "model/safetensors_writer.h"
#include "simd/half.h"

namespace fineserve::model {
namespace {

// ---- shapes ------------------------------------------------------------------------------------

struct Shape {
  const char* name;
  const char* arch;
  uint32_t hidden, ffn, layers, heads, kv_heads, head_dim, vocab, ctx;
  float theta, eps;
  bool tied, bias, llama3;
};

// Real models' hyper-parameters (their config.json files); "tiny" ones are for fast tests, with
// GQA and, for "tiny", Llama 3 scaling whose three frequency bands all occur at head_dim 16.
constexpr Shape kShapes[] = {
    {"tiny", "llama", 64, 192, 2, 4, 2, 16, 512, 2048, 10000.0f, 1e-5f, false, false, true},
    {"tiny-qwen2", "qwen2", 64, 160, 2, 4, 2, 16, 512, 2048, 1000000.0f, 1e-6f, true, true, false},
    {"llama-100m", "llama", 768, 2048, 12, 12, 4, 64, 32000, 2048, 10000.0f, 1e-5f, false, false, false},
    {"llama-3.2-1b", "llama", 2048, 8192, 16, 32, 8, 64, 128256, 131072, 500000.0f, 1e-5f, true, false, true},
    {"llama-3-8b", "llama", 4096, 14336, 32, 32, 8, 128, 128256, 8192, 500000.0f, 1e-5f, false, false, false},
    {"qwen2.5-0.5b", "qwen2", 896, 4864, 24, 14, 2, 64, 151936, 32768, 1000000.0f, 1e-6f, true, true, false},
};

// ---- random numbers ----------------------------------------------------------------------------

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Fills `out` with zero-mean, unit-variance values from the stream of (seed, tensor, row). Each
// value is the sum of four 16-bit uniforms (Irwin-Hall), normal to within a few percent and
// bounded at 3.46 sigma: ten times cheaper than Box-Muller, which matters at billions of weights,
// and free of outliers that would make the forward numerically unrepresentative.
void fill_row(uint64_t seed, uint64_t tensor_key, uint64_t row, float scale, float* out, uint64_t n) {
  uint64_t state = seed ^ tensor_key;
  state = splitmix64(state) ^ (row * 0xd1b54a32d192ed03ull);
  constexpr double kMean = 2.0 * 65535.0;
  const double kInvSd = 1.0 / std::sqrt((65536.0 * 65536.0 - 1.0) / 3.0);
  const float k = static_cast<float>(kInvSd) * scale;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t r = splitmix64(state);
    double sum = static_cast<double>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
    out[i] = static_cast<float>(sum - kMean) * k;
  }
}

// ---- the tensors -------------------------------------------------------------------------------

enum class Init { Matrix, Norm, Bias, RopeFreqs };

struct Planned {
  std::string hf_name;       // also the key of its random stream, whatever the format
  std::string gguf_name;
  std::vector<uint64_t> shape;
  Init init;
  uint32_t qk_head_dim = 0;  // non-zero: rows permuted for interleaved RoPE in GGUF "llama"
  bool in_hf = true, in_gguf = true;
};

std::vector<Planned> plan(const LlamaConfig& c) {
  const uint64_t h = c.hidden_size, f = c.intermediate_size, v = c.vocab_size;
  const uint64_t q = uint64_t{c.num_heads} * c.head_dim, kv = uint64_t{c.num_kv_heads} * c.head_dim;
  std::vector<Planned> p;
  p.push_back({"model.embed_tokens.weight", "token_embd.weight", {v, h}, Init::Matrix});
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    std::string hf = "model.layers." + std::to_string(l) + ".", gg = "blk." + std::to_string(l) + ".";
    p.push_back({hf + "input_layernorm.weight", gg + "attn_norm.weight", {h}, Init::Norm});
    p.push_back({hf + "self_attn.q_proj.weight", gg + "attn_q.weight", {q, h}, Init::Matrix, c.head_dim});
    if (c.qkv_bias) p.push_back({hf + "self_attn.q_proj.bias", gg + "attn_q.bias", {q}, Init::Bias, c.head_dim});
    p.push_back({hf + "self_attn.k_proj.weight", gg + "attn_k.weight", {kv, h}, Init::Matrix, c.head_dim});
    if (c.qkv_bias) p.push_back({hf + "self_attn.k_proj.bias", gg + "attn_k.bias", {kv}, Init::Bias, c.head_dim});
    p.push_back({hf + "self_attn.v_proj.weight", gg + "attn_v.weight", {kv, h}, Init::Matrix});
    if (c.qkv_bias) p.push_back({hf + "self_attn.v_proj.bias", gg + "attn_v.bias", {kv}, Init::Bias});
    p.push_back({hf + "self_attn.o_proj.weight", gg + "attn_output.weight", {h, q}, Init::Matrix});
    p.push_back({hf + "post_attention_layernorm.weight", gg + "ffn_norm.weight", {h}, Init::Norm});
    p.push_back({hf + "mlp.gate_proj.weight", gg + "ffn_gate.weight", {f, h}, Init::Matrix});
    p.push_back({hf + "mlp.up_proj.weight", gg + "ffn_up.weight", {f, h}, Init::Matrix});
    p.push_back({hf + "mlp.down_proj.weight", gg + "ffn_down.weight", {h, f}, Init::Matrix});
  }
  p.push_back({"model.norm.weight", "output_norm.weight", {h}, Init::Norm});
  if (!c.tied_embeddings) p.push_back({"lm_head.weight", "output.weight", {v, h}, Init::Matrix});
  if (c.rope_scaling.type == "llama3") {
    Planned r{"", "rope_freqs.weight", {c.head_dim / 2}, Init::RopeFreqs};
    r.in_hf = false;
    p.push_back(r);
  }
  return p;
}

float round_through(float x, DType t) {
  if (t == DType::F16) return simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(x));
  if (t == DType::BF16) return simd::bf16_to_f32_scalar(simd::f32_to_bf16_scalar(x));
  return x;
}

// Streams the planned tensors into a GgufWriter or SafetensorsWriter.
void stream_weights(TensorStream& w, const std::vector<Planned>& tensors, const LlamaConfig& c,
                    const GenerateOptions& o, bool gguf, uint64_t total_elements) {
  const bool permute = gguf && c.architecture == "llama";
  uint64_t done = 0, next_report = 0;
  std::vector<float> row;
  for (const Planned& t : tensors) {
    if (!(gguf ? t.in_gguf : t.in_hf)) continue;
    if (t.init == Init::RopeFreqs) {
      std::vector<float> d = gen::llama3_rope_divisors(c);
      w.write_f32(d.data(), d.size());
      continue;
    }
    const uint64_t key = fnv1a(t.hf_name);
    if (t.shape.size() == 1) {
      // 1-D tensors stay F32 in GGUF; rounding them through the model's dtype keeps both formats
      // holding the same numbers.
      row.resize(t.shape[0]);
      fill_row(o.seed, key, 0, t.init == Init::Norm ? 0.05f : 0.2f, row.data(), row.size());
      for (uint64_t i = 0; i < row.size(); ++i) {
        row[i] = round_through((t.init == Init::Norm ? 1.0f : 0.0f) + row[i], o.dtype);
      }
      if (permute && t.qk_head_dim != 0) {
        std::vector<float> hf = row;
        for (uint64_t i = 0; i < row.size(); ++i) row[i] = hf[hf_row_of_gguf_qk_row(i, t.qk_head_dim)];
      }
      w.write_f32(row.data(), row.size());
      done += row.size();
      continue;
    }
    // Matrices: std 1/sqrt(fan_in), so activations stay O(1) at any width (q.k / sqrt(head_dim)
    // has unit variance: softmax neither uniform nor one-hot) and logits are O(1).
    const uint64_t rows = t.shape[0], cols = t.shape[1];
    const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
    row.resize(cols);
    for (uint64_t r = 0; r < rows; ++r) {
      uint64_t src = permute && t.qk_head_dim != 0 ? hf_row_of_gguf_qk_row(r, t.qk_head_dim) : r;
      fill_row(o.seed, key, src, scale, row.data(), cols);
      w.write_f32(row.data(), cols);
      done += cols;
      if (o.on_progress && done >= next_report) {
        next_report = done + (1u << 22);
        if (!o.on_progress(static_cast<double>(done) / static_cast<double>(total_elements))) {
          throw ModelError(ModelErrc::Cancelled, o.out + ": generation cancelled");
        }
      }
    }
  }
  if (o.on_progress && !o.on_progress(1.0)) throw ModelError(ModelErrc::Cancelled, o.out + ": generation cancelled");
}

}  // namespace

std::vector<std::string> model_shapes() {
  std::vector<std::string> names;
  for (const Shape& s : kShapes) names.emplace_back(s.name);
  return names;
}

LlamaConfig shape_config(const std::string& shape, uint32_t layers, uint32_t vocab) {
  const Shape* s = nullptr;
  std::string known;
  for (const Shape& k : kShapes) {
    if (shape == k.name) s = &k;
    known += std::string(known.empty() ? "" : ", ") + k.name;
  }
  if (s == nullptr) throw std::invalid_argument("unknown model shape \"" + shape + "\" (known: " + known + ")");
  if (vocab != 0 && vocab < 8) throw std::invalid_argument("vocab must be at least 8, got " + std::to_string(vocab));
  LlamaConfig c;
  c.architecture = s->arch;
  c.vocab_size = vocab != 0 ? vocab : s->vocab;
  c.hidden_size = s->hidden;
  c.intermediate_size = s->ffn;
  c.num_layers = layers != 0 ? layers : s->layers;
  c.num_heads = s->heads;
  c.num_kv_heads = s->kv_heads;
  c.head_dim = s->head_dim;
  c.max_context = s->ctx;
  c.rms_norm_eps = s->eps;
  c.rope_theta = s->theta;
  c.rope_style = RopeStyle::HalfSplit;
  if (s->llama3) {
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 32.0f;
    c.rope_scaling.low_freq_factor = 1.0f;
    c.rope_scaling.high_freq_factor = 4.0f;
    c.rope_scaling.original_max_position = 8192;
  }
  c.tied_embeddings = s->tied;
  c.qkv_bias = s->bias;
  c.bos_token_id = gen::kBosId;
  c.eos_token_id = gen::kEosId;
  return c;
}

uint64_t parameter_count(const LlamaConfig& c) {
  uint64_t total = 0;
  for (const Planned& t : plan(c)) {
    if (t.init == Init::RopeFreqs) continue;  // derived from the config, not a weight
    uint64_t n = 1;
    for (uint64_t d : t.shape) n *= d;
    total += n;
  }
  return total;
}

GenerateResult generate_model(const GenerateOptions& o) {
  if (o.format != "gguf" && o.format != "hf") {
    throw std::invalid_argument("format must be \"gguf\" or \"hf\", got \"" + o.format + "\"");
  }
  if (o.out.empty()) throw std::invalid_argument("out (the output path) is required");
  const bool gguf = o.format == "gguf";
  GenerateResult result;
  result.config = shape_config(o.shape, o.layers, o.vocab);
  const LlamaConfig& c = result.config;
  if (gguf && c.architecture == "llama") result.config.rope_style = RopeStyle::Interleaved;
  result.path = o.out;

  std::vector<Planned> tensors = plan(c);
  const uint64_t total = parameter_count(c);
  result.parameters = total;

  if (gguf) {
    auto parent = std::filesystem::path(o.out).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    GgufWriter w(o.out);
    gen::add_gguf_metadata(w, c, o.dtype, o.shape, o.seed);
    for (const Planned& t : tensors) {
      if (t.in_gguf) w.add_tensor(t.gguf_name, t.shape.size() == 1 ? DType::F32 : o.dtype, t.shape);
    }
    w.begin_data();
    stream_weights(w, tensors, c, o, true, total);
    w.finish();
    result.bytes = w.file_bytes();
    return result;
  }

  bool folder_existed = std::filesystem::exists(o.out);
  std::filesystem::create_directories(o.out);
  std::vector<std::string> written = {"config.json", "generation_config.json", "tokenizer.json",
                                      "tokenizer_config.json"};
  try {
    SafetensorsWriter w(o.out, o.max_shard_bytes);
    w.add_metadata("fineserve.generated.shape", o.shape);
    w.add_metadata("fineserve.generated.seed", std::to_string(o.seed));
    for (const Planned& t : tensors) {
      if (t.in_hf) w.add_tensor(t.hf_name, o.dtype, t.shape);
    }
    result.bytes = gen::write_hf_files(o.out, c, o.dtype, o.shape, o.seed);
    w.begin_data();
    stream_weights(w, tensors, c, o, false, total);
    w.finish();
    result.bytes += w.file_bytes();
  } catch (...) {
    // The writer removed its partial shards; take the JSON files (and a folder we made) with them.
    std::error_code ec;
    for (const std::string& f : written) std::filesystem::remove(std::filesystem::path(o.out) / f, ec);
    if (!folder_existed) std::filesystem::remove(o.out, ec);
    throw;
  }
  return result;
}

}  // namespace fineserve::model
