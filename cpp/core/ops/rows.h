// Reading rows of a weight tensor as float32, whatever its storage type. Every kernel that
// consumes weights goes through here, so adding a storage type (the quantization work) means
// teaching this one function to decode it.
#pragma once

#include <cstdint>

#include "model/tensor.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

// Converts `count` elements starting at element `first` of the tensor into dst.
inline void load_f32(const model::TensorView& t, uint64_t first, uint64_t count, float* dst) {
  const simd::Kernels& k = simd::active();
  switch (t.dtype) {
    case model::DType::F32: {
      const float* src = reinterpret_cast<const float*>(t.data) + first;
      for (uint64_t i = 0; i < count; ++i) dst[i] = src[i];
      return;
    }
    case model::DType::F16:
      k.f16_to_f32(reinterpret_cast<const uint16_t*>(t.data) + first, dst, count);
      return;
    case model::DType::BF16:
      k.bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data) + first, dst, count);
      return;
  }
}

inline void load_row(const model::TensorView& t, uint64_t row, float* dst) {
  load_f32(t, row * t.cols(), t.cols(), dst);
}

// A pointer to row `row` as float32 when the tensor is stored that way (no copy), else nullptr.
inline const float* f32_row(const model::TensorView& t, uint64_t row) {
  return t.dtype == model::DType::F32 ? reinterpret_cast<const float*>(t.data) + row * t.cols() : nullptr;
}

}  // namespace fineserve::ops
