#include "model/tensor_stream.h"

#include <algorithm>
#include <stdexcept>

#include "quant/weight_format.h"
#include "simd/dispatch.h"

namespace fineserve::model {

void TensorStream::declare(const std::string& name, DType type, const std::vector<uint64_t>& shape) {
  for (const Tensor& t : tensors_) {
    if (t.name == name) throw std::invalid_argument(label_ + ": tensor \"" + name + "\" declared twice");
  }
  uint64_t elements = 1;
  for (uint64_t d : shape) elements *= d;
  uint64_t bytes = elements * dtype_bytes(type);
  if (is_quantized(type)) {
    // GGUF block types: whole blocks per row, as in the file. fineserve's own formats need a
    // group size and exist only in memory, so they are not written to files.
    const uint64_t cols = shape.empty() ? 0 : shape.back();
    std::string why = quant::block_elements(type) > 1 ? quant::row_layout_error(type, cols)
                                                      : std::string(dtype_name(type)) + " is not a file format";
    if (!why.empty()) throw std::invalid_argument(label_ + ": tensor \"" + name + "\": " + why);
    bytes = elements / cols * quant::row_bytes(type, cols);
  }
  tensors_.push_back({name, type, shape, bytes});
}

// Moves `current_` past tensors that have all their bytes (empty ones included); true if it moved.
bool TensorStream::skip_complete() {
  const size_t before = current_;
  while (current_ < tensors_.size() && current_written_ == tensors_[current_].bytes) {
    ++current_;
    current_written_ = 0;
  }
  return current_ != before;
}

void TensorStream::start_data() {
  skip_complete();
  on_next_tensor(current_);
}

void TensorStream::write(const void* data, uint64_t bytes) {
  if (!begun_ || finished_) throw std::logic_error(label_ + ": write() outside begin_data() .. finish()");
  if (current_ >= tensors_.size()) {
    throw std::logic_error(label_ + ": " + std::to_string(bytes) + " bytes written after the last tensor");
  }
  const Tensor& t = tensors_[current_];
  if (current_written_ + bytes > t.bytes) {
    throw std::logic_error(label_ + ": tensor \"" + t.name + "\" holds " + std::to_string(t.bytes) +
                           " bytes; a write would take it to " + std::to_string(current_written_ + bytes));
  }
  emit(data, bytes);
  current_written_ += bytes;
  if (skip_complete()) on_next_tensor(current_);
}

void TensorStream::write_f32(const float* values, uint64_t count) {
  if (current_ >= tensors_.size()) throw std::logic_error(label_ + ": values written after the last tensor");
  DType type = tensors_[current_].type;
  if (is_quantized(type)) {
    throw std::logic_error(label_ + ": tensor \"" + tensors_[current_].name + "\" is " + dtype_name(type) +
                           ": quantize its rows (quant::quantize_row) and write() the bytes");
  }
  if (type == DType::F32) {
    write(values, count * 4);
    return;
  }
  const simd::Kernels& k = simd::active();
  constexpr uint64_t kChunk = 1 << 16;
  convert_.resize(kChunk);
  for (uint64_t done = 0; done < count;) {
    uint64_t n = std::min(kChunk, count - done);
    (type == DType::F16 ? k.f32_to_f16 : k.f32_to_bf16)(values + done, convert_.data(), n);
    write(convert_.data(), n * 2);
    done += n;
  }
}

void TensorStream::check_complete() const {
  if (current_ < tensors_.size()) {
    const Tensor& t = tensors_[current_];
    throw std::logic_error(label_ + ": tensor \"" + t.name + "\" got " + std::to_string(current_written_) +
                           " of its " + std::to_string(t.bytes) + " bytes");
  }
}

}  // namespace fineserve::model
