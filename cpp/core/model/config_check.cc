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

}  // namespace

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
