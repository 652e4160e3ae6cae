// A tensor as the model files hold it: a typed, row-major view into a file's bytes (or into a
// buffer the loader owns). Matrices are [rows][cols] with cols contiguous, the layout of both
// GGUF (ne[0] is the fastest dimension) and safetensors/PyTorch: a linear layer y = W x has
// W of shape {out, in}.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fineserve::gemm {
struct PackedWeights;
}

namespace fineserve::model {

// Storage types of weights. Plain types are arrays of elements; the others are quantized row by
// row, so a row of any type starts at row * quant::row_bytes(dtype, cols, group) and the whole
// matrix never has to be dequantized (the byte layouts are documented in quant/weight_format.h).
enum class DType : uint8_t {
  F32, F16, BF16,
  // GGUF block formats, read in place from the file with llama.cpp's layouts.
  Q8_0, Q4_0, Q4_K, Q6_K,
  // fineserve's own formats, made at load (PTQ) from 16/32-bit weights.
  W8A8,   // int8 per output channel (f32 row scale); activations int8, dynamic per token
  FP8,    // E4M3 per output channel (f32 row scale); activations E4M3, dynamic per token
  W4A16,  // int4 asymmetric in groups of `group` along the row (last group may be partial)
  W4A8,   // FireQ: int4 symmetric, E4M3 group scales, f32 row scale; activations E4M3 per token
};

// "F32", "Q4_K", "W4A16", ...
const char* dtype_name(DType t);
// Bytes per element of a plain type (F32/F16/BF16); 0 for the quantized types, whose size is
// quant::row_bytes().
uint64_t dtype_bytes(DType t);
bool is_quantized(DType t);

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;   // outermost first: {rows, cols} for a matrix, {n} for a vector
  const uint8_t* data = nullptr;
  uint64_t bytes = 0;
  // W4A16 / W4A8: elements per quantization group along a row (0 for the other types).
  uint32_t group = 0;
  // Activation-aware scaling (AWQ) and outlier smoothing (SmoothQuant/FireQ) divide the input
  // channels of the activations and multiply the weight columns by the same factors. When set,
  // linear() multiplies its input by input_scale[c] (cols floats) before the product; the weights
  // already carry the inverse. nullptr: no scaling.
  const float* input_scale = nullptr;
  // Q8_0 / Q4_0 / Q4_K / Q6_K: linear()'s copy of the rows interleaved for the CPU GEMM
  // (gemm/packed.h), made at load or on first use. Shared by the view's copies.
  mutable std::shared_ptr<const gemm::PackedWeights> packed;
  // Set when the packed copy replaced the file's bytes at load (gemm/packed_load.h): data and
  // bytes are then the copy's, and readers that need the file's layout unpack a row
  // (ops::row_data).
  bool packed_only = false;

  uint64_t elements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
  }
  uint64_t rows() const { return shape.size() >= 2 ? shape[0] : 1; }
  uint64_t cols() const { return shape.empty() ? 0 : shape.back(); }
};

}  // namespace fineserve::model
