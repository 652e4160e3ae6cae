// The channel transforms of post-training quantization, in f32 before any rounding: FireQ's
// pre-RoPE K smoothing and the per-input-channel scaling of AWQ / SmoothQuant (see
// quantize_model.h for what each does and when).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/thread_pool.h"
#include "model/calibration.h"
#include "model/loader.h"

namespace fineserve::model {

// One layer's linear weights in f32 after the channel transforms, before rounding.
struct ScaledLayer {
  std::vector<float> wq, wk, wv, wo, w_gate, w_up, w_down;  // row-major {out, in}
  std::vector<float> bq, bk;  // empty when the model has no q/k biases
  // Per K channel (kv_heads * head_dim): K's divisor (1 everywhere without K smoothing).
  std::vector<float> k_factors;
  // What linear() multiplies each input by (1/s); empty where the input is left as it is.
  std::vector<float> attn_scale, o_scale, mlp_scale, down_scale;
  // The alpha chosen per input (attn, o, mlp, down); -1 for no scaling.
  float alpha[4] = {-1, -1, -1, -1};
};

// The transforms of layer `layer` for `spec`; `cal` may be null (no calibration). `checkpoint`
// is called between alpha candidates and may throw (cancellation).
ScaledLayer scale_layer(const LoadedModel& model, uint32_t layer, const QuantizeSpec& spec,
                        const LayerCalibration* cal, engine::ThreadPool& pool,
                        const std::function<void()>& checkpoint = {});

}  // namespace fineserve::model
