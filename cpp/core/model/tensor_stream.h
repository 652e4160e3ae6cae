// The part of GgufWriter and SafetensorsWriter that does not depend on the file format: tensors
// are declared up front, then their data arrives in declaration order, in pieces of any size, and
// each must get exactly its bytes. A writer derives from it, lays the tensors out in begin_data()
// and says where bytes go (emit) and what happens when the next tensor starts (on_next_tensor).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/tensor.h"

namespace fineserve::model {

class TensorStream {
 public:
  TensorStream(const TensorStream&) = delete;
  TensorStream& operator=(const TensorStream&) = delete;

  // Appends raw bytes (already in the tensor's type) to the current tensor; a piece may not cross
  // into the next tensor.
  void write(const void* data, uint64_t bytes);
  // Appends values converted to the current tensor's type (round to nearest even for F16/BF16).
  void write_f32(const float* values, uint64_t count);

 protected:
  struct Tensor {
    std::string name;
    DType type;
    std::vector<uint64_t> shape;
    uint64_t bytes;
    uint64_t offset = 0;  // where the writer places its data (the format decides from where)
  };

  // `label` starts every error message ("gguf writer").
  explicit TensorStream(std::string label) : label_(std::move(label)) {}
  ~TensorStream() = default;

  // Adds a tensor after the writer's own checks; a name may be declared once.
  void declare(const std::string& name, DType type, const std::vector<uint64_t>& shape);
  // For begin_data(), once the writer can take bytes.
  void start_data();
  // For finish(): throws unless every tensor got all its bytes.
  void check_complete() const;

  // Writes bytes to the output.
  virtual void emit(const void* p, uint64_t n) = 0;
  // Tensor `index` is the next to receive data, or, as tensors_.size(), all are complete. Empty
  // tensors never receive any, so they are passed over.
  virtual void on_next_tensor(size_t index) = 0;

  const std::string label_;
  std::vector<Tensor> tensors_;
  bool begun_ = false;     // begin_data() was called
  bool finished_ = false;  // finish() succeeded
  size_t current_ = 0;     // tensor receiving data

 private:
  bool skip_complete();

  uint64_t current_written_ = 0;
  std::vector<uint16_t> convert_;  // scratch for write_f32
};

}  // namespace fineserve::model
