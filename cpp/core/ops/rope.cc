#include "ops/rope.h"

#include <cmath>

namespace fineserve::ops {

std::vector<double> rope_inv_freq(const model::LlamaConfig& c) {
  const uint32_t half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (uint32_t i = 0; i < half; ++i) {
    inv[i] = 1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / c.head_dim);
  }
  if (c.rope_scaling.type == "llama3") {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band between
    // is interpolated smoothly (HF transformers, _compute_llama3_parameters).
    const double factor = c.rope_scaling.factor, low = c.rope_scaling.low_freq_factor,
                 high = c.rope_scaling.high_freq_factor, old_ctx = c.rope_scaling.original_max_position;
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    const double pi = 3.14159265358979323846;
    for (double& f : inv) {
      double wavelen = 2 * pi / f;
      if (wavelen > low_wavelen) {
        f = f / factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (old_ctx / wavelen - low) / (high - low);
        f = (1 - smooth) * f / factor + smooth * f;
      }
    }
  }
  return inv;
}

void apply_rope(float* x, uint32_t heads, uint32_t head_dim, uint32_t pos, model::RopeStyle style,
                const std::vector<double>& inv_freq) {
  const uint32_t half = head_dim / 2;
  for (uint32_t i = 0; i < half; ++i) {
    double angle = pos * inv_freq[i];
    float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
    // Interleaved rotates adjacent pairs (2i, 2i+1); half-split rotates (i, i + head_dim/2).
    uint32_t a = style == model::RopeStyle::Interleaved ? 2 * i : i;
    uint32_t b = style == model::RopeStyle::Interleaved ? 2 * i + 1 : i + half;
    for (uint32_t h = 0; h < heads; ++h) {
      float* v = x + static_cast<size_t>(h) * head_dim;
      float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

}  // namespace fineserve::ops
