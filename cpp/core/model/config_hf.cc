// Hugging Face config.json -> LlamaConfig for LlamaForCausalLM, MistralForCausalLM and
// Qwen2ForCausalLM. Defaults for absent keys are those of transformers' LlamaConfig /
// MistralConfig / Qwen2Config, so a folder means here what it means to transformers and vLLM.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "model/config_readers.h"
#include "model/model_error.h"

namespace fineserve::model {

const char* const kSupportedHfArchitectures =
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (model_type llama, mistral, qwen2)";

namespace {

struct Arch {
  const char* class_name;
  const char* model_type;
  uint32_t default_max_position;  // the transformers config class default
};
const Arch kArchs[] = {
    {"LlamaForCausalLM", "llama", 2048},
    {"MistralForCausalLM", "mistral", 4096 * 32},
    {"Qwen2ForCausalLM", "qwen2", 32768},
};

class Config {
 public:
  Config(const json::Value& root, const std::string& path) : root_(root), path_(path) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what,
                         ModelErrc code = ModelErrc::Corrupt) const {
    throw ModelError(code, path_ + ": \"" + key + "\": " + what);
  }

  // The member, or nullptr when absent or null (transformers treats null as "use the default").
  const json::Value* get(const std::string& key, const json::Value* in = nullptr) const {
    const json::Value* v = (in ? in : &root_)->find(key);
    return v && !v->is_null() ? v : nullptr;
  }

  std::string shown(const json::Value& v) const {
    if (v.is_number()) return v.number_text();
    if (v.is_string()) return "\"" + v.as_string().substr(0, 100) + "\"";
    return std::string("a JSON ") + json::type_name(v.type());
  }

  uint32_t u32(const std::string& key, std::optional<uint32_t> fallback = std::nullopt,
               const json::Value* in = nullptr, const std::string& shown_key = "") const {
    const std::string& name = shown_key.empty() ? key : shown_key;
    const json::Value* v = get(key, in);
    if (!v) {
      if (fallback) return *fallback;
      fail(name, "is missing");
    }
    auto n = v->as_uint64();
    if (!n || *n > std::numeric_limits<uint32_t>::max()) {
      fail(name, "expected an unsigned 32-bit integer, found " + shown(*v));
    }
    return uint32_t(*n);
  }

  float number(const std::string& key, float fallback, const json::Value* in = nullptr,
               const std::string& shown_key = "") const {
    const json::Value* v = get(key, in);
    if (!v) return fallback;
    auto d = v->as_double();
    if (!d) fail(shown_key.empty() ? key : shown_key, "expected a number, found " + shown(*v));
    return float(*d);
  }

  bool boolean(const std::string& key, bool fallback) const {
    const json::Value* v = get(key);
    if (!v) return fallback;
    if (!v->is_bool()) fail(key, "expected true or false, found " + shown(*v));
    return v->as_bool();
  }

  std::optional<std::string> string(const std::string& key, const json::Value* in = nullptr) const {
    const json::Value* v = get(key, in);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(key, "expected a string, found " + shown(*v));
    return v->as_string();
  }

  // bos/eos: an id, null, or (eos of chat models) a list whose first entry is the main one.
  int32_t token_id(const std::string& key) const {
    const json::Value* v = get(key);
    if (v && v->is_array()) v = v->size() ? &v->items()[0] : nullptr;
    if (!v) return -1;
    auto n = v->as_int64();
    if (!n || *n < 0 || *n > std::numeric_limits<int32_t>::max()) fail(key, "expected a token id, found " + shown(*v));
    return int32_t(*n);
  }

 private:
  const json::Value& root_;
  const std::string& path_;
};

const Arch& architecture(const Config& cfg) {
  const json::Value* archs = cfg.get("architectures");
  if (archs) {
    if (!archs->is_array() || archs->size() == 0 || !archs->items()[0].is_string()) {
      cfg.fail("architectures", "expected a list of class names");
    }
    const std::string& name = archs->items()[0].as_string();
    for (const Arch& a : kArchs) {
      if (name == a.class_name) return a;
    }
    cfg.fail("architectures", "architecture \"" + name + "\" is not supported; supported: " + kSupportedHfArchitectures,
             ModelErrc::Unsupported);
  }
  std::optional<std::string> type = cfg.string("model_type");
  if (!type) cfg.fail("model_type", "is missing (and there is no \"architectures\")");
  for (const Arch& a : kArchs) {
    if (*type == a.model_type) return a;
  }
  cfg.fail("model_type", "architecture \"" + *type + "\" is not supported; supported: " + kSupportedHfArchitectures,
           ModelErrc::Unsupported);
}

void rope_scaling(const Config& cfg, LlamaConfig& c) {
  const json::Value* rs = cfg.get("rope_scaling");
  if (!rs) return;
  if (!rs->is_object()) cfg.fail("rope_scaling", "expected an object or null");
  // transformers renamed "type" to "rope_type" and still accepts both.
  std::optional<std::string> type = cfg.string("rope_type", rs);
  if (!type) type = cfg.string("type", rs);
  if (!type || *type == "default") return;
  if (*type != "llama3") {
    cfg.fail("rope_scaling", "RoPE scaling \"" + *type + "\" is not supported (llama3 is)", ModelErrc::Unsupported);
  }
  RopeScaling s;
  s.type = "llama3";
  if (!cfg.get("factor", rs)) cfg.fail("rope_scaling.factor", "is missing");
  s.factor = cfg.number("factor", 1.0f, rs, "rope_scaling.factor");
  s.low_freq_factor = cfg.number("low_freq_factor", 1.0f, rs, "rope_scaling.low_freq_factor");
  s.high_freq_factor = cfg.number("high_freq_factor", 4.0f, rs, "rope_scaling.high_freq_factor");
  s.original_max_position = cfg.u32("original_max_position_embeddings", 8192u, rs,
                                    "rope_scaling.original_max_position_embeddings");
  c.rope_scaling = s;
}

}  // namespace

LlamaConfig config_from_hf(const json::Value& root, const std::string& path) {
  Config cfg(root, path);
  if (!root.is_object()) {
    throw ModelError(ModelErrc::Corrupt,
                     path + ": expected a JSON object, found a JSON " + json::type_name(root.type()));
  }
  const Arch& arch = architecture(cfg);
  LlamaConfig c;
  c.architecture = arch.model_type;
  c.hidden_size = cfg.u32("hidden_size");
  c.intermediate_size = cfg.u32("intermediate_size");
  c.num_layers = cfg.u32("num_hidden_layers");
  c.num_heads = cfg.u32("num_attention_heads");
  c.num_kv_heads = cfg.u32("num_key_value_heads", c.num_heads);
  c.head_dim = cfg.get("head_dim") ? cfg.u32("head_dim")
                                    : derived_head_dim(c, path, "hidden_size", "num_attention_heads");
  c.vocab_size = cfg.u32("vocab_size");
  c.max_context = cfg.u32("max_position_embeddings", arch.default_max_position);
  c.rms_norm_eps = cfg.number("rms_norm_eps", 1e-6f);
  c.rope_theta = cfg.number("rope_theta", 10000.0f);
  c.tied_embeddings = cfg.boolean("tie_word_embeddings", false);
  c.bos_token_id = cfg.token_id("bos_token_id");
  c.eos_token_id = cfg.token_id("eos_token_id");
  c.rope_style = RopeStyle::HalfSplit;  // transformers' rotate_half
  c.qkv_bias = c.architecture == "qwen2";
  rope_scaling(cfg, c);

  std::string act = cfg.string("hidden_act").value_or("silu");
  if (act != "silu") {
    cfg.fail("hidden_act", "activation \"" + act + "\" is not supported (silu is)", ModelErrc::Unsupported);
  }
  // LlamaForCausalLM's attention_bias adds o_proj.bias too, and mlp_bias biases the MLP; the
  // weights have no place for either.
  if (cfg.boolean("attention_bias", false)) {
    cfg.fail("attention_bias", "attention biases are not supported", ModelErrc::Unsupported);
  }
  if (cfg.boolean("mlp_bias", false)) cfg.fail("mlp_bias", "MLP biases are not supported", ModelErrc::Unsupported);
  // Past the window, full attention gives different answers than the model was trained for:
  // serve no more context than the window rather than silently diverge.
  bool windowed =
      c.architecture == "mistral" || (c.architecture == "qwen2" && cfg.boolean("use_sliding_window", false));
  if (windowed && cfg.get("sliding_window")) {
    c.max_context = std::min(c.max_context, cfg.u32("sliding_window"));
  }

  check_config(c, path,
               {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "head_dim", "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "bos_token_id",
                "eos_token_id"});
  return c;
}

}  // namespace fineserve::model
