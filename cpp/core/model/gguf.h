// GGUF (versions 2 and 3) parser: header, typed metadata, tensor directory. It parses a byte
// span, so the same code serves a mapped file, a test buffer and the fuzzer; nothing is copied
// out of the span that need not be (strings and packed arrays are views into it), so a File is
// valid only while those bytes are. Every count, length and offset is bounds-checked: anything
// out of range is ModelError(Corrupt) naming the file, the field or tensor, and the value.
// Layout reference: ggml/docs/gguf.md in the llama.cpp repository.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/tensor.h"

namespace fineserve::model::gguf {

enum class ValueType : uint32_t {
  UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};

const char* value_type_name(ValueType t);  // "uint32", "string", "array", ...

// One metadata value. Scalars are widened into u / i / f; arrays keep their elements where
// the file has them, so a 150k-entry token list costs one view per string and a score list
// costs nothing.
struct Value {
  ValueType type = ValueType::UInt8;
  uint64_t u = 0;         // UInt8..UInt64, and Bool (0 or 1)
  int64_t i = 0;          // Int8..Int64
  double f = 0;           // Float32, Float64
  std::string_view str;   // String (bytes as stored; GGUF says UTF-8 but nothing enforces it)

  // Array only.
  ValueType elem_type = ValueType::UInt8;
  uint64_t count = 0;
  const uint8_t* packed = nullptr;         // numeric and bool elements, little-endian, unaligned
  std::vector<std::string_view> strings;   // string elements
  std::vector<Value> arrays;               // array elements (arrays of arrays)

  bool is_integer() const;  // UInt*/Int*
  bool is_float() const;    // Float32/Float64
  // The value of an integer scalar when it fits in int64, else nullopt.
  std::optional<int64_t> as_int() const;
  // The value of any numeric scalar (integers converted), else nullopt.
  std::optional<double> as_number() const;
  // Element k of a numeric or bool array as a scalar Value. k < count is the caller's job.
  Value element(uint64_t k) const;
};

// Bytes one packed element of `t` takes; 0 for String and Array.
uint64_t value_type_size(ValueType t);

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> ne;   // ggml order: ne[0] is the fastest-varying dimension
  uint32_t ggml_type = 0;
  DType dtype = DType::F32;
  uint64_t offset = 0;        // from the start of the data section
  uint64_t bytes = 0;

  // Outermost first, as TensorView has it: ne reversed.
  std::vector<uint64_t> shape() const { return {ne.rbegin(), ne.rend()}; }
};

struct File {
  std::string path;            // for messages
  const uint8_t* base = nullptr;
  uint64_t size = 0;
  uint32_t version = 0;
  uint64_t alignment = 32;     // general.alignment, default 32
  uint64_t data_offset = 0;    // absolute start of the tensor data section (aligned)
  std::vector<std::pair<std::string, Value>> metadata;  // in file order
  std::vector<TensorInfo> tensors;                      // in file order

  const Value* find(std::string_view key) const;
  const TensorInfo* find_tensor(std::string_view name) const;
  // The tensor's bytes as a view (shape outermost first).
  TensorView view(const TensorInfo& t) const;

  std::unordered_map<std::string, size_t> metadata_index;
  std::unordered_map<std::string, size_t> tensor_index;
};

// Parses the header and tensor directory of `size` bytes at `data`; `path` names the file in
// errors. Tensor types other than F32/F16/BF16 are ModelError(Unsupported) naming the tensor and
// the ggml type (see ggml_type.h).
File parse(const uint8_t* data, uint64_t size, const std::string& path);

// Checks that the tensors tile the data section as llama.cpp and gguf-py write it: from offset 0,
// back to back, each padded to the alignment, the last one ending the file. A larger region
// means a type or shape that does not describe the bytes (BF16 declared over F32 data) or
// shifted data: ModelError(Corrupt) naming the tensor, its type and shape, and both sizes. The
// loader runs it after matching shapes to the configuration, whose message is the more telling
// for a wrong dimension.
void check_data_layout(const File& file);

}  // namespace fineserve::model::gguf
