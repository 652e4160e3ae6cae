#include "engine/device_weights.h"

#include <algorithm>
#include <string>

#include "ops/rows.h"
#include "quant/weight_format.h"
#include "simd/half.h"

namespace fineserve::gpu {

DeviceWeights::DeviceWeights(const model::LoadedModel& model, Stream stream) {
  const model::LlamaWeights& w = model.weights;
  token_embedding = matrix(w.token_embedding, stream, false);
  // A tied output projection reads the embedding's upload when the kernels can use its type.
  const bool tied = w.output.data == w.token_embedding.data && linear_supports(token_embedding.dtype);
  output = tied ? token_embedding : matrix(w.output, stream, true);
  output_norm = floats(w.output_norm, stream);
  layers.reserve(w.layers.size());
  for (const model::LlamaLayerWeights& lw : w.layers) {
    DeviceLayerWeights d;
    d.wq = matrix(lw.wq, stream, true);
    d.wk = matrix(lw.wk, stream, true);
    d.wv = matrix(lw.wv, stream, true);
    d.wo = matrix(lw.wo, stream, true);
    d.w_gate = matrix(lw.w_gate, stream, true);
    d.w_up = matrix(lw.w_up, stream, true);
    d.w_down = matrix(lw.w_down, stream, true);
    if (lw.bq.data != nullptr) d.bq = floats(lw.bq, stream);
    if (lw.bk.data != nullptr) d.bk = floats(lw.bk, stream);
    if (lw.bv.data != nullptr) d.bv = floats(lw.bv, stream);
    d.attn_norm = floats(lw.attn_norm, stream);
    d.ffn_norm = floats(lw.ffn_norm, stream);
    layers.push_back(d);
  }
  // The host copies staged above must stay alive until the copies ran.
  stream_sync(stream);
}

const float* DeviceWeights::upload(const void* host, size_t bytes, Stream stream, const char* what) {
  buffers_.emplace_back(bytes, what);
  copy_to_device(buffers_.back().as(), host, bytes, stream);
  device_bytes += bytes;
  return buffers_.back().as<float>();
}

const float* DeviceWeights::floats(const model::TensorView& t, Stream stream) {
  std::vector<float> host(t.elements());
  ops::load_f32(t, 0, host.size(), host.data());
  const float* p = upload(host.data(), host.size() * sizeof(float), stream, t.name.c_str());
  stream_sync(stream);  // `host` goes out of scope
  return p;
}

DeviceMatrix DeviceWeights::matrix(const model::TensorView& t, Stream stream, bool for_linear) {
  DeviceMatrix m;
  m.rows = static_cast<uint32_t>(t.rows());
  m.cols = static_cast<uint32_t>(t.cols());
  const bool in_place = for_linear ? linear_supports(t.dtype) : !model::is_quantized(t.dtype);
  if (in_place) {
    m.dtype = t.dtype;
    m.group = t.group;
    m.row_bytes = quant::row_bytes(t.dtype, t.cols(), t.group);
    m.data_offset = quant::row_data_offset(t.dtype, t.cols(), t.group);
    m.data = reinterpret_cast<const uint8_t*>(upload(t.data, m.row_bytes * m.rows, stream, t.name.c_str()));
  } else {
    // Widen row by row to F16: a GGUF Q4_K embedding of a 128k vocabulary is never expanded to
    // f32 in host memory whole.
    m.dtype = model::DType::F16;
    m.row_bytes = 2ull * m.cols;
    buffers_.emplace_back(m.row_bytes * m.rows, t.name.c_str());
    device_bytes += m.row_bytes * m.rows;
    auto* dst = buffers_.back().as<uint8_t>();
    // A slice of rows at a time, each slice's copy running while the next one is converted.
    const uint32_t slice = std::max<uint32_t>(1, static_cast<uint32_t>((4u << 20) / m.row_bytes));
    std::vector<float> row(m.cols);
    std::vector<uint16_t> half[2];
    for (uint32_t r0 = 0, k = 0; r0 < m.rows; r0 += slice, k ^= 1) {
      const uint32_t n = std::min(slice, m.rows - r0);
      half[k].resize(static_cast<size_t>(n) * m.cols);
      for (uint32_t r = 0; r < n; ++r) {
        ops::load_row(t, r0 + r, row.data());
        for (uint32_t i = 0; i < m.cols; ++i) half[k][static_cast<size_t>(r) * m.cols + i] = simd::f32_to_f16_scalar(row[i]);
      }
      // The previous slice's copy ran while this one was converted; half[k] is free again next time.
      stream_sync(stream);
      copy_to_device(dst + r0 * m.row_bytes, half[k].data(), n * m.row_bytes, stream);
    }
    stream_sync(stream);
    m.data = dst;
    ++widened_tensors;
  }
  if (t.input_scale != nullptr) m.input_scale = upload(t.input_scale, m.cols * sizeof(float), stream, "input_scale");
  return m;
}

}  // namespace fineserve::gpu
