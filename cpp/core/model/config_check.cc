#include <cmath>
#include <string>

#include "model/config_readers.h"
#include "model/model_error.h"

namespace fineserve::model {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& key, const std::string& what) {
  throw ModelError(ModelErrc::Corrupt, path + ": " + key + ": " + what);
}

void positive(const std::string& path, const std::string& key, uint64_t v) {
  if (v == 0) fail(path, key, "must be positive, found 0");
}

void token_id_in_vocab(const std::string& path, const std::string& key, int32_t id, const LlamaConfig& c,
                       const std::string& vocab_key) {
  if (id >= 0 && uint32_t(id) >= c.vocab_size) {
    fail(path, key, "token id " + std::to_string(id) + " is outside the vocabulary: " + vocab_key + " = " +
                        std::to_string(c.vocab_size) + " (ids 0.." + std::to_string(c.vocab_size - 1) + ")");
  }
}

}  // namespace

uint32_t derived_head_dim(const LlamaConfig& c, const std::string& path, const std::string& hidden_key,
                          const std::string& heads_key) {
  positive(path, heads_key, c.num_heads);
  if (c.hidden_size % c.num_heads != 0) {
    fail(path, heads_key, std::to_string(c.num_heads) + " heads do not divide " + hidden_key + " = " +
                              std::to_string(c.hidden_size) + ", and no head dimension is given to say otherwise");
  }
  return c.hidden_size / c.num_heads;
}

void check_config(const LlamaConfig& c, const std::string& path, const ConfigKeys& k) {
  positive(path, k.hidden_size, c.hidden_size);
  positive(path, k.intermediate_size, c.intermediate_size);
  positive(path, k.num_layers, c.num_layers);
  positive(path, k.num_heads, c.num_heads);
  positive(path, k.num_kv_heads, c.num_kv_heads);
  positive(path, k.head_dim, c.head_dim);
  positive(path, k.vocab_size, c.vocab_size);
  positive(path, k.max_context, c.max_context);
  if (c.num_heads % c.num_kv_heads != 0) {
    fail(path, k.num_kv_heads, std::to_string(c.num_kv_heads) + " does not divide " + k.num_heads + " = " +
                                   std::to_string(c.num_heads) + " (each KV head serves a whole group of query heads)");
  }
  token_id_in_vocab(path, k.bos_token_id, c.bos_token_id, c, k.vocab_size);
  token_id_in_vocab(path, k.eos_token_id, c.eos_token_id, c, k.vocab_size);
  // RoPE rotates dimensions in pairs.
  if (c.head_dim % 2 != 0) fail(path, k.head_dim, "must be even for RoPE, found " + std::to_string(c.head_dim));
  if (!(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0)) {
    fail(path, k.rms_norm_eps, "must be a positive number, found " + std::to_string(c.rms_norm_eps));
  }
  if (!(std::isfinite(c.rope_theta) && c.rope_theta > 0)) {
    fail(path, k.rope_theta, "must be a positive number, found " + std::to_string(c.rope_theta));
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "llama3") {
    if (!(std::isfinite(s.factor) && s.factor > 0)) {
      fail(path, "rope_scaling.factor", "must be positive, found " + std::to_string(s.factor));
    }
    if (!(s.low_freq_factor > 0 && s.high_freq_factor > s.low_freq_factor && std::isfinite(s.high_freq_factor))) {
      fail(path, "rope_scaling", "needs 0 < low_freq_factor < high_freq_factor, found " +
                                     std::to_string(s.low_freq_factor) + " and " + std::to_string(s.high_freq_factor));
    }
    if (s.original_max_position == 0) {
      fail(path, "rope_scaling.original_max_position_embeddings", "must be positive, found 0");
    }
  }
}

}  // namespace fineserve::model
