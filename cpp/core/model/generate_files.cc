#include "model/generate_files.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "model/safetensors_writer.h"

namespace fineserve::model::gen {
namespace {

bool is_llama3(const LlamaConfig& c) { return c.rope_scaling.type == "llama3"; }

uint64_t write_text(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error(path + ": cannot create: " + std::strerror(errno));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw std::runtime_error(path + ": write failed: " + std::strerror(errno));
  return text.size();
}

const char* torch_dtype(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";  // quantized models are written by gguf_quantize, not here
  }
}

// general.file_type as llama.cpp numbers it (LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_BF16).
uint32_t gguf_file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::BF16: return 32;
    case DType::Q8_0: return 7;  // LLAMA_FTYPE_MOSTLY_Q8_0
    case DType::Q4_0: return 2;  // LLAMA_FTYPE_MOSTLY_Q4_0
    default: return 0;
  }
}

}  // namespace

std::string float_text(float v) {
  char buf[32];
  for (int precision = 1; precision <= 9; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // Whole numbers as "500000.0", not "5e+05": what config.json files hold, and still a float.
  if (std::nearbyint(v) == v && std::fabs(v) < 1e15f) {
    std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(v));
    s = buf;
  }
  return s;
}

std::vector<std::string> vocab_pieces(uint32_t vocab_size) {
  std::vector<std::string> pieces;
  pieces.reserve(vocab_size);
  const char* special[] = {"<unk>", "<s>", "</s>"};
  for (uint32_t i = 0; i < vocab_size; ++i) {
    char buf[32];
    if (i < 3) {
      pieces.emplace_back(special[i]);
    } else if (i < 3 + 256) {
      std::snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
      pieces.emplace_back(buf);
    } else {
      std::snprintf(buf, sizeof buf, "<tok_%u>", i);
      pieces.emplace_back(buf);
    }
  }
  return pieces;
}

std::vector<float> llama3_rope_divisors(const LlamaConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  double low_wavelen = s.original_max_position / static_cast<double>(s.low_freq_factor);
  double high_wavelen = s.original_max_position / static_cast<double>(s.high_freq_factor);
  std::vector<float> out(c.head_dim / 2);
  for (uint32_t i = 0; i < c.head_dim / 2; ++i) {
    double inv_freq = 1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / c.head_dim);
    double wavelen = 2.0 * M_PI / inv_freq;
    double divisor;
    if (wavelen < high_wavelen) {
      divisor = 1.0;
    } else if (wavelen > low_wavelen) {
      divisor = s.factor;
    } else {
      double smooth = (s.original_max_position / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      divisor = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    out[i] = static_cast<float>(divisor);
  }
  return out;
}

void add_gguf_metadata(GgufWriter& w, const LlamaConfig& c, DType dtype, const std::string& shape, uint64_t seed) {
  const std::string a = c.architecture;
  w.add_string("general.architecture", a);
  w.add_string("general.name", "fineserve random " + shape);
  w.add_u32("general.file_type", gguf_file_type(dtype));
  w.add_u32(a + ".vocab_size", c.vocab_size);
  w.add_u32(a + ".context_length", c.max_context);
  w.add_u32(a + ".embedding_length", c.hidden_size);
  w.add_u32(a + ".block_count", c.num_layers);
  w.add_u32(a + ".feed_forward_length", c.intermediate_size);
  w.add_u32(a + ".attention.head_count", c.num_heads);
  w.add_u32(a + ".attention.head_count_kv", c.num_kv_heads);
  w.add_u32(a + ".attention.key_length", c.head_dim);
  w.add_u32(a + ".attention.value_length", c.head_dim);
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  w.add_f32(a + ".rope.freq_base", c.rope_theta);
  w.add_u32(a + ".rope.dimension_count", c.head_dim);
  if (is_llama3(c)) {
    // llama.cpp has no metadata for Llama 3 scaling: its converter stores the per-pair divisors as
    // the rope_freqs.weight tensor (generate.cc writes it) and leaves rope.scaling.type/factor
    // unset, since it reads a factor as linear scaling and asserts on an unknown type. Readers
    // (ours included) recover factor 32 / low 1 / high 4 / 8192 from that tensor.
    w.add_u32(a + ".rope.scaling.original_context_length", c.rope_scaling.original_max_position);
  }

  std::vector<std::string> pieces = vocab_pieces(c.vocab_size);
  std::vector<float> scores(c.vocab_size);
  std::vector<int32_t> types(c.vocab_size);
  for (uint32_t i = 0; i < c.vocab_size; ++i) {
    scores[i] = -static_cast<float>(i);
    // SentencePiece token types: 1 normal, 2 unknown, 3 control, 6 byte.
    types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 3 + 256 ? 6 : 1;
  }
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array("tokenizer.ggml.tokens", pieces);
  w.add_f32_array("tokenizer.ggml.scores", scores);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(c.bos_token_id));
  w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(c.eos_token_id));
  w.add_u32("tokenizer.ggml.unknown_token_id", kUnkId);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  w.add_bool("tokenizer.ggml.add_eos_token", false);

  w.add_string("fineserve.generated.shape", shape);
  w.add_u64("fineserve.generated.seed", seed);
}

uint64_t write_hf_files(const std::string& folder, const LlamaConfig& c, DType dtype, const std::string& shape,
                        uint64_t seed) {
  bool qwen = c.architecture == "qwen2";
  std::string j = "{\n";
  auto field = [&](const std::string& k, const std::string& v) { j += "  " + json_quote(k) + ": " + v + ",\n"; };
  auto num = [](uint64_t v) { return std::to_string(v); };
  field("architectures", qwen ? "[\"Qwen2ForCausalLM\"]" : "[\"LlamaForCausalLM\"]");
  field("model_type", qwen ? "\"qwen2\"" : "\"llama\"");
  field("vocab_size", num(c.vocab_size));
  field("hidden_size", num(c.hidden_size));
  field("intermediate_size", num(c.intermediate_size));
  field("num_hidden_layers", num(c.num_layers));
  field("num_attention_heads", num(c.num_heads));
  field("num_key_value_heads", num(c.num_kv_heads));
  if (!qwen) field("head_dim", num(c.head_dim));  // Qwen2Config derives it from hidden / heads
  field("max_position_embeddings", num(c.max_context));
  field("rms_norm_eps", float_text(c.rms_norm_eps));
  field("rope_theta", float_text(c.rope_theta));
  if (is_llama3(c)) {
    const RopeScaling& s = c.rope_scaling;
    field("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": " + float_text(s.factor) +
                              ", \"low_freq_factor\": " + float_text(s.low_freq_factor) +
                              ", \"high_freq_factor\": " + float_text(s.high_freq_factor) +
                              ", \"original_max_position_embeddings\": " + num(s.original_max_position) + "}");
  } else {
    field("rope_scaling", "null");
  }
  field("tie_word_embeddings", c.tied_embeddings ? "true" : "false");
  if (qwen) {
    field("use_sliding_window", "false");
    field("sliding_window", num(c.max_context));
    field("max_window_layers", num(c.num_layers));
  } else {
    field("attention_bias", c.qkv_bias ? "true" : "false");
    field("mlp_bias", "false");
  }
  field("hidden_act", "\"silu\"");
  field("initializer_range", "0.02");
  field("bos_token_id", num(static_cast<uint64_t>(c.bos_token_id)));
  field("eos_token_id", num(static_cast<uint64_t>(c.eos_token_id)));
  field("use_cache", "true");
  field("fineserve_generated", "{\"shape\": " + json_quote(shape) + ", \"seed\": " + num(seed) + "}");
  j += "  \"torch_dtype\": \"" + std::string(torch_dtype(dtype)) + "\"\n}\n";

  uint64_t bytes = write_text(folder + "/config.json", j);
  bytes += write_text(folder + "/generation_config.json",
                      "{\n  \"bos_token_id\": " + num(static_cast<uint64_t>(c.bos_token_id)) +
                          ",\n  \"eos_token_id\": " + num(static_cast<uint64_t>(c.eos_token_id)) + "\n}\n");

  // A word-level tokenizer over the same pieces as the GGUF vocabulary: enough for tools that
  // insist on tokenizer.json; text in and out is not meaningful for random weights anyway.
  std::vector<std::string> pieces = vocab_pieces(c.vocab_size);
  std::string t = "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[";
  for (int32_t i = 0; i < 3 && i < static_cast<int32_t>(pieces.size()); ++i) {
    t += std::string(i ? "," : "") + "{\"id\":" + std::to_string(i) + ",\"content\":" + json_quote(pieces[i]) +
         ",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}";
  }
  t += "],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"},\"post_processor\":null,"
       "\"decoder\":null,\"model\":{\"type\":\"WordLevel\",\"unk_token\":\"<unk>\",\"vocab\":{";
  for (size_t i = 0; i < pieces.size(); ++i) t += (i ? "," : "") + json_quote(pieces[i]) + ":" + std::to_string(i);
  t += "}}}\n";
  bytes += write_text(folder + "/tokenizer.json", t);
  bytes += write_text(folder + "/tokenizer_config.json",
                      "{\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n"
                      "  \"add_bos_token\": true,\n  \"model_max_length\": " + num(c.max_context) +
                          ",\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n");
  return bytes;
}

}  // namespace fineserve::model::gen
