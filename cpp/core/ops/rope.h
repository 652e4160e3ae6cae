// Rotary position embedding, with Llama 3 frequency scaling.
#pragma once

#include <cstdint>
#include <vector>

#include "model/llama_config.h"

namespace fineserve::ops {

// Inverse frequencies per rotated pair, head_dim / 2 of them, with the config's scaling applied.
std::vector<double> rope_inv_freq(const model::LlamaConfig& config);

// Rotates `heads` vectors of head_dim floats stored back to back, all at position `pos`.
void apply_rope(float* x, uint32_t heads, uint32_t head_dim, uint32_t pos, model::RopeStyle style,
                const std::vector<double>& inv_freq);

}  // namespace fineserve::ops
