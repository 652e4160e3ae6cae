// DeviceWeights::synthetic: a model's shape with random weights made on the device, for benchmarks.
#include <stdexcept>
#include <string>

#include "engine/device_weights.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"

namespace fineserve::gpu {

DeviceMatrix DeviceWeights::synthetic_matrix(model::DType t, uint32_t rows, uint32_t cols, uint32_t group, uint64_t seed,
                                             Stream stream) {
  DeviceMatrix m;
  m.dtype = t;
  m.rows = rows;
  m.cols = cols;
  m.group = quant::traits(t).grouped ? group : 0;
  m.row_bytes = quant::row_bytes(t, cols, m.group);
  m.data_offset = quant::row_data_offset(t, cols, m.group);
  buffers_.emplace_back(m.row_bytes * rows, "synthetic weights");
  device_bytes += m.row_bytes * rows;
  m.data = buffers_.back().as<uint8_t>();
  fill_synthetic(m, seed, stream);
  return m;
}

const float* DeviceWeights::constant(uint32_t n, float value, Stream stream) {
  buffers_.emplace_back(size_t{n} * sizeof(float), "synthetic norm");
  device_bytes += size_t{n} * sizeof(float);
  fill_f32(buffers_.back().as<float>(), n, value, stream);
  return buffers_.back().as<float>();
}

DeviceWeights DeviceWeights::synthetic(const model::LlamaConfig& c, model::DType linear_type, uint32_t group,
                                       uint64_t seed, Stream stream) {
  const std::string err = quant::row_layout_error(linear_type, c.hidden_size, group);
  if (!linear_supports(linear_type) || !err.empty()) {
    throw std::invalid_argument(std::string("synthetic weights: linear type ") + model::dtype_name(linear_type) +
                                (err.empty() ? " has no GPU kernel" : ": " + err));
  }
  DeviceWeights w;
  const uint32_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  uint64_t s = seed;
  w.token_embedding = w.synthetic_matrix(model::DType::F16, c.vocab_size, c.hidden_size, 0, s++, stream);
  w.output = c.tied_embeddings ? w.token_embedding
                               : w.synthetic_matrix(model::DType::F16, c.vocab_size, c.hidden_size, 0, s++, stream);
  w.output_norm = w.constant(c.hidden_size, 1.0f, stream);
  for (uint32_t l = 0; l < c.num_layers; ++l) {
    DeviceLayerWeights d;
    d.wq = w.synthetic_matrix(linear_type, q_dim, c.hidden_size, group, s++, stream);
    d.wk = w.synthetic_matrix(linear_type, kv_dim, c.hidden_size, group, s++, stream);
    d.wv = w.synthetic_matrix(linear_type, kv_dim, c.hidden_size, group, s++, stream);
    d.wo = w.synthetic_matrix(linear_type, c.hidden_size, q_dim, group, s++, stream);
    d.w_gate = w.synthetic_matrix(linear_type, c.intermediate_size, c.hidden_size, group, s++, stream);
    d.w_up = w.synthetic_matrix(linear_type, c.intermediate_size, c.hidden_size, group, s++, stream);
    d.w_down = w.synthetic_matrix(linear_type, c.hidden_size, c.intermediate_size, group, s++, stream);
    d.attn_norm = w.constant(c.hidden_size, 1.0f, stream);
    d.ffn_norm = w.constant(c.hidden_size, 1.0f, stream);
    w.layers.push_back(d);
  }
  stream_sync(stream);
  return w;
}

}  // namespace fineserve::gpu
