// A loaded model's weights copied to the device once, in the byte layout they were loaded in
// (quant/weight_format.h), so GPU kernels decode exactly what the CPU path decodes. Weight types the
// GPU kernels cannot read in place (gpu::linear_supports; the GGUF block formats) are widened to
// F16 on the way; norms and biases go up as f32.
#pragma once

#include <cstdint>
#include <vector>

#include "common/device.h"
#include "kernels/kernels.h"
#include "model/loader.h"

namespace fineserve::gpu {

struct DeviceLayerWeights {
  DeviceMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
  const float* bq = nullptr;  // Qwen2 biases, else null
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
};

class DeviceWeights {
 public:
  // Uploads a loaded model's weights.
  DeviceWeights(const model::LoadedModel& model, Stream stream);
  // Random weights of a model's shape made on the device, for benchmarks at real sizes (8B
  // parameters are generated in milliseconds there, not written and read back as a file). The
  // seven linears of every layer are `linear_type` (group `group` for W4A16/W4A8), the embedding
  // and the output projection F16. Values are scaled so activations stay in range over all layers.
  static DeviceWeights synthetic(const model::LlamaConfig& config, model::DType linear_type, uint32_t group,
                                 uint64_t seed, Stream stream);

  DeviceWeights(DeviceWeights&&) = default;
  DeviceWeights& operator=(DeviceWeights&&) = default;

  DeviceMatrix token_embedding, output;
  std::vector<DeviceLayerWeights> layers;
  const float* output_norm = nullptr;
  uint64_t device_bytes = 0;      // what the upload holds on the device
  uint32_t widened_tensors = 0;   // tensors converted to F16 because no kernel reads their type

 private:
  DeviceMatrix matrix(const model::TensorView& t, Stream stream, bool for_linear);
  const float* floats(const model::TensorView& t, Stream stream);
  const float* upload(const void* host, size_t bytes, Stream stream, const char* what);
  DeviceWeights() = default;
  DeviceMatrix synthetic_matrix(model::DType t, uint32_t rows, uint32_t cols, uint32_t group, uint64_t seed,
                                Stream stream);
  const float* constant(uint32_t n, float value, Stream stream);

  std::vector<DeviceBuffer> buffers_;
};

}  // namespace fineserve::gpu
