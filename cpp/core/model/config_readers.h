// LlamaConfig from the two places a model describes itself: GGUF metadata and an HF config.json.
// Both reject architectures outside the Llama family by name (ModelError(Unsupported)) and
// check the numbers they read for consistency (ModelError(Corrupt) naming the key and value).
#pragma once

#include <string>

#include "model/gguf.h"
#include "model/json.h"
#include "model/llama_config.h"

namespace fineserve::model {

// GGUF "llama" (also Mistral's GGUFs) and "qwen2". tied_embeddings is left false: whether
// output.weight is the embedding is the loader's call, from the tensors.
LlamaConfig config_from_gguf(const gguf::File& file);

// config.json of LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM; `path` names the
// file in errors. Defaults for absent optional keys follow the transformers config classes.
LlamaConfig config_from_hf(const json::Value& config, const std::string& path);

// The architecture names each format accepts, for messages: "llama, qwen2".
extern const char* const kSupportedGgufArchitectures;
extern const char* const kSupportedHfArchitectures;

// The field names one source uses, so shared checks speak the file's language.
struct ConfigKeys {
  std::string hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, head_dim,
      vocab_size, max_context, rms_norm_eps, rope_theta, bos_token_id, eos_token_id;
};

// Consistency every reader needs (positive sizes, heads divisible by KV heads, even head_dim,
// BOS/EOS ids inside the vocabulary, sane eps/theta/RoPE scaling). Throws ModelError(Corrupt)
// naming `path`, the key and the values.
void check_config(const LlamaConfig& c, const std::string& path, const ConfigKeys& keys);

// head_dim for a file that does not give it: hidden_size / num_heads. Throws ModelError(Corrupt)
// naming both keys and values when num_heads is 0 or does not divide hidden_size.
uint32_t derived_head_dim(const LlamaConfig& c, const std::string& path, const std::string& hidden_key,
                          const std::string& heads_key);

}  // namespace fineserve::model
