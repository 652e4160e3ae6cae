#include "engine/kv_binding.h"

#include <stdexcept>
#include <string>

namespace fineserve::engine {

kv::KvGeometry kv_geometry_for(const model::LlamaConfig& c, kv::KvFormat format, uint32_t tokens_per_block) {
  return kv::KvGeometry{tokens_per_block, c.num_layers, c.num_kv_heads, c.head_dim, format,
                        kv::default_scale_bytes(format)};
}

void check_kv_geometry(const model::LlamaConfig& config, kv::KvFormat format, const kv::KvLayout& registered) {
  const kv::KvGeometry& have = registered.geometry;
  const kv::KvGeometry want = kv_geometry_for(config, format, have.tokens_per_block);
  if (have.num_layers == want.num_layers && have.num_kv_heads == want.num_kv_heads && have.head_dim == want.head_dim &&
      have.format == want.format && have.scale_bytes == want.scale_bytes) {
    return;
  }
  throw std::invalid_argument("the KV model registered with the slab does not match the model's KV geometry (" +
                              std::to_string(want.num_layers) + " layers x " + std::to_string(want.num_kv_heads) +
                              " kv heads x " + std::to_string(want.head_dim) + " " + kv::format_name(want.format) +
                              ", scaleBytes " + std::to_string(want.scale_bytes) + "; registered: " +
                              std::to_string(have.num_layers) + " x " + std::to_string(have.num_kv_heads) + " x " +
                              std::to_string(have.head_dim) + " " + kv::format_name(have.format) + ", scaleBytes " +
                              std::to_string(have.scale_bytes) + ")");
}

}  // namespace fineserve::engine
