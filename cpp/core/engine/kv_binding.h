// How a model binds to its KV cache in the slab, for every backend: the block geometry it needs in
// a KV format, and the check that what was registered with the slab is that geometry.
#pragma once

#include <cstdint>

#include "kv/kv_geometry.h"
#include "model/llama_config.h"

namespace fineserve::engine {

// The KV block geometry a model needs in a given KV format, with the format's scale bytes
// (kv::default_scale_bytes); register it with the slab (KvPool::add_model) before creating an
// executor.
kv::KvGeometry kv_geometry_for(const model::LlamaConfig& config, kv::KvFormat format, uint32_t tokens_per_block = 16);

// Throws std::invalid_argument naming both geometries when `registered` is not
// kv_geometry_for(config, format) (any tokens per block).
void check_kv_geometry(const model::LlamaConfig& config, kv::KvFormat format, const kv::KvLayout& registered);

}  // namespace fineserve::engine
