// safetensors parser (one file): an 8-byte little-endian header length, a JSON header mapping
// tensor names to {dtype, shape, data_offsets}, then the data. Like the GGUF parser it reads a
// byte span and keeps views into it. Offsets are checked against the file and each other, and
// the byte count against shape x dtype; "__metadata__" is skipped.
// Format reference: https://github.com/huggingface/safetensors (README, "Format").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tensor.h"

namespace fineserve::model::safetensors {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;  // outermost first
  uint64_t begin = 0;           // data_offsets, relative to the start of the data section
  uint64_t end = 0;
};

struct File {
  std::string path;  // for messages
  const uint8_t* base = nullptr;
  uint64_t size = 0;
  uint64_t header_size = 0;   // bytes of JSON
  uint64_t data_offset = 0;   // 8 + header_size
  std::vector<TensorInfo> tensors;  // in data order

  const TensorInfo* find(std::string_view name) const;
  TensorView view(const TensorInfo& t) const;

  std::unordered_map<std::string, size_t> index;
};

// The format's own cap (safetensors MAX_HEADER_SIZE): larger headers are rejected as corrupt
// before any of it is parsed.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Throws ModelError(Corrupt) for a malformed file and ModelError(Unsupported) for a dtype other
// than F32/F16/BF16, naming `path`, the tensor and the value.
File parse(const uint8_t* data, uint64_t size, const std::string& path);

}  // namespace fineserve::model::safetensors
