// A tensor as the model files hold it: a typed, row-major view into mapped file bytes (or into a
// buffer the loader owns). Matrices are [rows][cols] with cols contiguous, the layout of both
// GGUF (ne[0] is the fastest dimension) and safetensors/PyTorch: a linear layer y = W x has
// W of shape {out, in}.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fineserve::model {

// Element types of weights. The quantization issue adds the GGUF block formats here.
enum class DType : uint8_t { F32, F16, BF16 };

const char* dtype_name(DType t);
uint64_t dtype_bytes(DType t);

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;   // outermost first: {rows, cols} for a matrix, {n} for a vector
  const uint8_t* data = nullptr;
  uint64_t bytes = 0;

  uint64_t elements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
  }
  uint64_t rows() const { return shape.size() >= 2 ? shape[0] : 1; }
  uint64_t cols() const { return shape.empty() ? 0 : shape.back(); }
};

}  // namespace fineserve::model
