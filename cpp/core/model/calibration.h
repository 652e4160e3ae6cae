// Activation statistics for post-training quantization: the unquantized model is run over
// calibration token sequences (the serving forward pass, engine::LlamaForward, with an f32 KV
// cache) and every linear layer's input is summarised per channel, as AWQ and SmoothQuant do
// before they choose their scales.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/thread_pool.h"
#include "model/loader.h"

namespace fineserve::model {

// One linear input (shared by the projections that read it).
struct ChannelStats {
  std::vector<double> mean_abs;  // per channel, over every calibration token
  std::vector<float> max_abs;
  // Up to kMaxSampleRows rows of the input, evenly strided over all tokens: what the scale
  // search evaluates the quantized layer's output error on.
  std::vector<float> samples;    // [sample_rows][channels]
  uint32_t sample_rows = 0;
  uint64_t rows_seen = 0;
};

struct LayerCalibration {
  ChannelStats attn_in;  // q/k/v_proj
  ChannelStats o_in;     // o_proj
  ChannelStats mlp_in;   // gate/up_proj
  ChannelStats down_in;  // down_proj
  // Per channel max |q| and |k| after the projections, before RoPE (K smoothing for int4 KV).
  std::vector<float> q_max, k_max;
};

struct Calibration {
  std::vector<LayerCalibration> layers;
  uint64_t tokens = 0;
};

inline constexpr uint32_t kMaxSampleRows = 256;

// Runs every sequence (each as one prefill from position 0) through `model`, whose linear
// weights must still be the loaded ones. on_progress gets the fraction of tokens done; when it
// returns false this throws ModelError(Cancelled). Throws ModelError naming the sequence and
// token for an empty sequence, a token outside the vocabulary or one past the context length.
Calibration calibrate(const LoadedModel& model, const std::vector<std::vector<int32_t>>& sequences,
                      engine::ThreadPool& pool, const std::function<bool(double)>& on_progress = {});

// The checks calibrate() makes before running anything (load_model makes them before loading
// weights it would then throw away).
void check_calibration(const LlamaConfig& config, const std::vector<std::vector<int32_t>>& sequences);

}  // namespace fineserve::model
