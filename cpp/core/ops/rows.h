// Reading rows of a weight tensor as float32, whatever its storage type. Every kernel that
// consumes weights as floats goes through here (embedding lookups, norms, the f32 fallback of
// linear); the integer kernels of quant/qdot.h read quantized rows in place.
#pragma once

#include <cstdint>
#include <vector>

#include "gemm/packed_load.h"
#include "model/tensor.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

// Where row `row` of a matrix starts, for every storage type. A view packed at load
// (TensorView::packed_only) has no rows in the file's layout: the row is unpacked into a buffer of
// this thread's, valid until its next call.
inline const uint8_t* row_data(const model::TensorView& t, uint64_t row) {
  if (t.packed_only) {
    thread_local std::vector<uint8_t> unpacked;
    unpacked.resize(quant::row_bytes(t.dtype, t.cols(), t.group));
    gemm::unpack_any_row(*t.packed, row, unpacked.data());
    return unpacked.data();
  }
  return t.data + row * quant::row_bytes(t.dtype, t.cols(), t.group);
}

// `n` elements of a plain type (F32 / F16 / BF16) at p as floats: 16-bit types through the
// active SIMD level's kernel named by their row (quant::WeightTypeTraits::widen), F32 copied.
inline void load_plain(const quant::WeightTypeTraits& type, const uint8_t* p, uint64_t n, float* dst) {
  if (type.widen != nullptr) {
    (simd::active().*type.widen)(reinterpret_cast<const uint16_t*>(p), dst, n);
    return;
  }
  const float* src = reinterpret_cast<const float*>(p);
  for (uint64_t i = 0; i < n; ++i) dst[i] = src[i];
}

inline void load_row(const model::TensorView& t, uint64_t row, float* dst) {
  const uint8_t* p = row_data(t, row);
  if (model::is_quantized(t.dtype)) {
    quant::dequantize_row(t.dtype, p, t.cols(), t.group, dst);
  } else {
    load_plain(quant::traits(t.dtype), p, t.cols(), dst);
  }
}

// Converts `count` elements starting at element `first` (row-major over the whole tensor) into dst.
// Quantized rows are decoded whole, so ranges that are not whole rows cost a row-sized buffer.
inline void load_f32(const model::TensorView& t, uint64_t first, uint64_t count, float* dst) {
  const uint64_t cols = t.cols();
  if (!model::is_quantized(t.dtype) || cols == 0) {
    const quant::WeightTypeTraits& type = quant::traits(t.dtype);
    load_plain(type, t.data + first * type.element_bytes(), count, dst);
    return;
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
