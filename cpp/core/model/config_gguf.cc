// GGUF metadata -> LlamaConfig, following the keys llama.cpp's convert_hf_to_gguf.py writes and
// llama-model.cpp reads for LLM_ARCH_LLAMA and LLM_ARCH_QWEN2.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "model/config_readers.h"
#include "model/model_error.h"

namespace fineserve::model {

const char* const kSupportedGgufArchitectures = "llama, qwen2";

namespace {

constexpr double kPi = 3.14159265358979323846;

class Meta {
 public:
  Meta(const gguf::File& f, std::string prefix) : f_(f), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what,
                         ModelErrc code = ModelErrc::Corrupt) const {
    throw ModelError(code, f_.path + ": metadata key \"" + key + "\": " + what);
  }

  // "llama.context_length" for "context_length".
  std::string arch_key(const char* suffix) const { return prefix_ + suffix; }

  const gguf::Value* get(const std::string& key) const {
    const gguf::Value* v = f_.find(key);
    if (v && v->type == gguf::ValueType::Array) {
      // Some architectures give per-layer head counts; the Llama family never does.
      fail(key, "per-layer values (an array) are not supported for this key", ModelErrc::Unsupported);
    }
    return v;
  }

  uint32_t u32(const std::string& key, std::optional<uint32_t> fallback = std::nullopt) const {
    const gguf::Value* v = get(key);
    if (!v) {
      if (fallback) return *fallback;
      fail(key, "is missing");
    }
    auto n = v->as_int();
    if (!n || *n < 0 || *n > int64_t(std::numeric_limits<uint32_t>::max())) {
      fail(key, std::string("expected an unsigned 32-bit integer, found ") + describe(*v));
    }
    return uint32_t(*n);
  }

  float number(const std::string& key, std::optional<float> fallback = std::nullopt) const {
    const gguf::Value* v = get(key);
    if (!v) {
      if (fallback) return *fallback;
      fail(key, "is missing");
    }
    auto n = v->as_number();
    if (!n) fail(key, std::string("expected a number, found ") + describe(*v));
    return float(*n);
  }

  std::optional<std::string> string(const std::string& key) const {
    const gguf::Value* v = get(key);
    if (!v) return std::nullopt;
    if (v->type != gguf::ValueType::String) fail(key, std::string("expected a string, found ") + describe(*v));
    return std::string(v->str);
  }

  // A token id, or -1 where the file has none (llama.cpp writes 0xFFFFFFFF for "none").
  int32_t token_id(const std::string& key) const {
    const gguf::Value* v = get(key);
    if (!v) return -1;
    auto n = v->as_int();
    if (!n) fail(key, std::string("expected an integer token id, found ") + describe(*v));
    return (*n < 0 || *n > std::numeric_limits<int32_t>::max()) ? -1 : int32_t(*n);
  }

  static std::string describe(const gguf::Value& v) {
    std::string s = gguf::value_type_name(v.type);
    if (v.is_integer()) {
      auto n = v.as_int();
      s += " " + (n ? std::to_string(*n) : std::to_string(v.u));
    } else if (v.is_float()) {
      s += " " + std::to_string(v.f);
    }
    return s;
  }

 private:
  const gguf::File& f_;
  std::string prefix_;
};

// Llama 3.1+ GGUFs carry RoPE scaling as a rope_freqs.weight tensor of per-pair divisors rather
// than as metadata. Recover the llama3 parameters by recomputing the factors the converter
// (convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors) would have written for the one
// parameter set Meta has shipped (low 1, high 4, original context 8192 unless
// rope.scaling.original_context_length says otherwise) and comparing.
void rope_freqs(const gguf::File& f, const Meta& m, LlamaConfig& c) {
  const gguf::TensorInfo* t = f.find_tensor("rope_freqs.weight");
  if (!t) return;
  auto fail = [&](const std::string& what) {
    throw ModelError(ModelErrc::Unsupported, f.path + ": tensor \"rope_freqs.weight\": " + what);
  };
  uint32_t pairs = c.head_dim / 2;
  if (t->dtype != DType::F32 || t->ne.size() != 1 || t->ne[0] != pairs) {
    fail("expected " + std::to_string(pairs) + " F32 frequency factors (head_dim / 2)");
  }
  std::vector<float> stored(pairs);
  std::memcpy(stored.data(), f.base + f.data_offset + t->offset, pairs * sizeof(float));
  float factor = 1.0f;
  for (float x : stored) {
    if (!std::isfinite(x) || x <= 0) fail("holds a non-positive or non-finite factor");
    factor = std::max(factor, x);
  }
  if (factor == 1.0f) return;  // all ones: no scaling at all

  RopeScaling s;
  s.type = "llama3";
  s.factor = factor;
  s.low_freq_factor = 1.0f;
  s.high_freq_factor = 4.0f;
  s.original_max_position = m.u32(m.arch_key("rope.scaling.original_context_length"), 8192u);
  if (s.original_max_position == 0) {
    m.fail(m.arch_key("rope.scaling.original_context_length"), "must be positive, found 0");
  }
  const double low_wavelen = s.original_max_position / s.low_freq_factor;
  const double high_wavelen = s.original_max_position / s.high_freq_factor;
  for (uint32_t k = 0; k < pairs; ++k) {
    double freq = 1.0 / std::pow(double(c.rope_theta), 2.0 * k / c.head_dim);
    double wavelen = 2 * kPi / freq;
    double expect = factor;
    if (wavelen < high_wavelen) {
      expect = 1;
    } else if (wavelen <= low_wavelen) {
      double smooth =
          (s.original_max_position / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      expect = 1 / ((1 - smooth) / factor + smooth);
    }
    if (std::fabs(stored[k] - expect) > 1e-3 * expect) {
      fail("frequency factor " + std::to_string(k) + " is " + std::to_string(stored[k]) + ", where Llama 3 scaling " +
           "(factor " + std::to_string(factor) + ", low 1, high 4, original context " +
           std::to_string(s.original_max_position) + ") gives " + std::to_string(expect) +
           "; other frequency scalings are not supported");
    }
  }
  c.rope_scaling = s;
}

}  // namespace

LlamaConfig config_from_gguf(const gguf::File& f) {
  Meta root(f, "");
  std::optional<std::string> arch = root.string("general.architecture");
  if (!arch) root.fail("general.architecture", "is missing");
  if (*arch != "llama" && *arch != "qwen2") {
    root.fail("general.architecture", "architecture \"" + *arch + "\" is not supported; supported: " +
                                          kSupportedGgufArchitectures, ModelErrc::Unsupported);
  }
  Meta m(f, *arch + ".");
  LlamaConfig c;
  c.architecture = *arch;
  c.hidden_size = m.u32(m.arch_key("embedding_length"));
  c.num_layers = m.u32(m.arch_key("block_count"));
  c.intermediate_size = m.u32(m.arch_key("feed_forward_length"));
  c.num_heads = m.u32(m.arch_key("attention.head_count"));
  c.num_kv_heads = m.u32(m.arch_key("attention.head_count_kv"), c.num_heads);
  c.max_context = m.u32(m.arch_key("context_length"));
  c.rms_norm_eps = m.number(m.arch_key("attention.layer_norm_rms_epsilon"));
  c.rope_theta = m.number(m.arch_key("rope.freq_base"), 10000.0f);

  const std::string key_length = m.arch_key("attention.key_length");
  c.head_dim = f.find(key_length) ? m.u32(key_length)
                                  : derived_head_dim(c, f.path, m.arch_key("embedding_length"),
                                                     m.arch_key("attention.head_count"));
  uint32_t value_dim = m.u32(m.arch_key("attention.value_length"), c.head_dim);
  if (value_dim != c.head_dim) {
    m.fail(m.arch_key("attention.value_length"), std::to_string(value_dim) + " differs from key_length " +
                                                     std::to_string(c.head_dim) + "; not supported",
           ModelErrc::Unsupported);
  }
  uint32_t rot = m.u32(m.arch_key("rope.dimension_count"), c.head_dim);
  if (rot != c.head_dim) {
    m.fail(m.arch_key("rope.dimension_count"), "partial rotary embedding (" + std::to_string(rot) + " of " +
                                                   std::to_string(c.head_dim) + " dimensions) is not supported",
           ModelErrc::Unsupported);
  }

  std::string scaling = m.string(m.arch_key("rope.scaling.type")).value_or("none");
  if (scaling != "none") {
    m.fail(m.arch_key("rope.scaling.type"), "RoPE scaling \"" + scaling + "\" is not supported (none, or Llama 3 " +
                                                "scaling through rope_freqs.weight, are)", ModelErrc::Unsupported);
  }
  float linear = m.number(m.arch_key("rope.scale_linear"), 1.0f);
  if (linear != 1.0f) {
    m.fail(m.arch_key("rope.scale_linear"), "linear RoPE scaling " + std::to_string(linear) + " is not supported",
           ModelErrc::Unsupported);
  }

  // Vocabulary: the model's own key when present, else the tokenizer's list, else the
  // embedding's rows; the loader checks the embedding against whichever was used.
  const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (f.find(m.arch_key("vocab_size"))) {
    c.vocab_size = m.u32(m.arch_key("vocab_size"));
    // llama.cpp sizes the vocabulary by the token list; a key that disagrees with it leaves
    // tokens without rows, or rows without tokens.
    if (tokens && tokens->type == gguf::ValueType::Array && tokens->count != c.vocab_size) {
      m.fail(m.arch_key("vocab_size"), std::to_string(c.vocab_size) + ", but tokenizer.ggml.tokens holds " +
                                           std::to_string(tokens->count) + " tokens");
    }
  } else if (tokens && tokens->type == gguf::ValueType::Array) {
    if (tokens->count > std::numeric_limits<uint32_t>::max()) root.fail("tokenizer.ggml.tokens", "too many tokens");
    c.vocab_size = uint32_t(tokens->count);
  } else if (embd && embd->ne.size() == 2 && embd->ne[1] <= std::numeric_limits<uint32_t>::max()) {
    c.vocab_size = uint32_t(embd->ne[1]);
  }

  c.bos_token_id = root.token_id("tokenizer.ggml.bos_token_id");
  c.eos_token_id = root.token_id("tokenizer.ggml.eos_token_id");
  // llama.cpp's converter permutes Q/K rows of "llama" models so that RoPE rotates adjacent
  // pairs (the original Meta layout); qwen2 is converted unpermuted and uses NEOX-style halves.
  c.rope_style = *arch == "llama" ? RopeStyle::Interleaved : RopeStyle::HalfSplit;
  c.qkv_bias = *arch == "qwen2" || f.find_tensor("blk.0.attn_q.bias") != nullptr;

  const std::string p = *arch + ".";
  check_config(c, f.path,
               {p + "embedding_length", p + "feed_forward_length", p + "block_count", p + "attention.head_count",
                p + "attention.head_count_kv", p + "attention.key_length", "vocab size (tokenizer.ggml.tokens)",
                p + "context_length", p + "attention.layer_norm_rms_epsilon", p + "rope.freq_base",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"});
  rope_freqs(f, m, c);
  return c;
}

}  // namespace fineserve::model
