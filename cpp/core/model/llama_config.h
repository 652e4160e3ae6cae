// The hyper-parameters of a Llama-family model, filled from GGUF metadata or an HF config.json.
#pragma once

#include <cstdint>
#include <string>

namespace fineserve::model {

// How RoPE pairs dimensions. GGUF "llama" files store Q/K permuted for adjacent pairs (2i, 2i+1);
// Hugging Face Llama/Mistral/Qwen2 and GGUF "qwen2" rotate halves (i, i + head_dim/2).
enum class RopeStyle : uint8_t { Interleaved, HalfSplit };

struct RopeScaling {
  // "none" or "llama3" (Llama 3.1+ frequency-dependent scaling).
  std::string type = "none";
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  uint32_t original_max_position = 8192;
};

struct LlamaConfig {
  std::string architecture;       // "llama", "mistral", "qwen2" (as the file names it)
  uint32_t vocab_size = 0;
  uint32_t hidden_size = 0;
  uint32_t intermediate_size = 0;
  uint32_t num_layers = 0;
  uint32_t num_heads = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;          // usually hidden_size / num_heads
  uint32_t max_context = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::HalfSplit;
  RopeScaling rope_scaling;
  bool tied_embeddings = false;   // output projection reuses the token embedding
  bool qkv_bias = false;          // Qwen2
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;
};

}  // namespace fineserve::model
