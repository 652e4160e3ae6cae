// Reading rows of a weight tensor as float32, whatever its storage type. Every kernel that
// consumes weights as floats goes through here (embedding lookups, norms, the f32 fallback of
// linear); the integer kernels of quant/qdot.h read quantized rows in place.
#pragma once

#include <cstdint>
#include <vector>

#include "model/tensor.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

// Where row `row` of a matrix starts, for every storage type.
inline const uint8_t* row_data(const model::TensorView& t, uint64_t row) {
  return t.data + row * quant::row_bytes(t.dtype, t.cols(), t.group);
}

inline void load_row(const model::TensorView& t, uint64_t row, float* dst) {
  const simd::Kernels& k = simd::active();
  const uint64_t cols = t.cols();
  const uint8_t* p = row_data(t, row);
  switch (t.dtype) {
    case model::DType::F32: {
      const float* src = reinterpret_cast<const float*>(p);
      for (uint64_t i = 0; i < cols; ++i) dst[i] = src[i];
      return;
    }
    case model::DType::F16: k.f16_to_f32(reinterpret_cast<const uint16_t*>(p), dst, cols); return;
    case model::DType::BF16: k.bf16_to_f32(reinterpret_cast<const uint16_t*>(p), dst, cols); return;
    default: quant::dequantize_row(t.dtype, p, cols, t.group, dst); return;
  }
}

// Converts `count` elements starting at element `first` (row-major over the whole tensor) into dst.
// Quantized rows are decoded whole, so ranges that are not whole rows cost a row-sized buffer.
inline void load_f32(const model::TensorView& t, uint64_t first, uint64_t count, float* dst) {
  const uint64_t cols = t.cols();
  if (!model::is_quantized(t.dtype) || cols == 0) {
    const simd::Kernels& k = simd::active();
    switch (t.dtype) {
      case model::DType::F16: k.f16_to_f32(reinterpret_cast<const uint16_t*>(t.data) + first, dst, count); return;
      case model::DType::BF16: k.bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data) + first, dst, count); return;
      default: {
        const float* src = reinterpret_cast<const float*>(t.data) + first;
        for (uint64_t i = 0; i < count; ++i) dst[i] = src[i];
        return;
      }
    }
  }
  std::vector<float> buf;
  while (count > 0) {
    const uint64_t row = first / cols, at = first % cols, n = std::min(count, cols - at);
    if (at == 0 && n == cols) {
      load_row(t, row, dst);
    } else {
      buf.resize(cols);
      load_row(t, row, buf.data());
      std::copy(buf.begin() + at, buf.begin() + at + n, dst);
    }
    first += n;
    count -= n;
    dst += n;
  }
}

// A pointer to row `row` as float32 when the tensor is stored that way (no copy), else nullptr.
inline const float* f32_row(const model::TensorView& t, uint64_t row) {
  return t.dtype == model::DType::F32 ? reinterpret_cast<const float*>(t.data) + row * t.cols() : nullptr;
}

}  // namespace fineserve::ops
