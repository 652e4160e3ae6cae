// Writing GGUF v3 files: metadata (of the common types, or any value copied from a parsed file),
// then tensors (F32/F16/BF16, or the GGUF block types Q8_0/Q4_0/Q4_K/Q6_K as raw blocks) whose data
// is streamed in (a multi-GB model never has to be in memory at once).
//
// Use: add metadata and declare every tensor (name, type, shape), call begin_data(), then append
// each tensor's data in declaration order with write() / write_f32() (TensorStream), in as many
// pieces as you like, and finish(). The file is written as `path + ".part"` and renamed into place
// by finish(), so an interrupted write never leaves a file that looks complete.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "model/gguf.h"
#include "model/tensor_stream.h"

namespace fineserve::model {

class GgufWriter : public TensorStream {
 public:
  // Whether begin_data() adds general.alignment when no add_* call did. A file copied key by key
  // from another (gguf_quantize) must not gain a key its source lacked; readers assume 32 then.
  enum class AlignmentKey { Always, WhenNotDefault };

  // Every tensor's data starts at a multiple of `alignment` (general.alignment).
  explicit GgufWriter(std::string path, uint32_t alignment = 32, AlignmentKey key = AlignmentKey::Always);
  ~GgufWriter();  // without finish(): closes and removes the partial file

  // Metadata, kept in the order added. A key may be added once.
  void add_u32(const std::string& key, uint32_t value);
  void add_i32(const std::string& key, int32_t value);
  void add_u64(const std::string& key, uint64_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string(const std::string& key, const std::string& value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& values);
  void add_u32_array(const std::string& key, const std::vector<uint32_t>& values);
  void add_f32_array(const std::string& key, const std::vector<float>& values);
  // Any value as gguf::parse read it (any type, nested arrays included), written back bit for bit.
  void add_value(const std::string& key, const gguf::Value& value);

  // Declares a tensor. `shape` is outermost first, as TensorView holds it ({rows, cols}); the file
  // stores ne[] fastest first, i.e. reversed.
  void add_tensor(const std::string& name, DType type, const std::vector<uint64_t>& shape);

  // Writes the header, metadata and tensor table; data follows (TensorStream::write / write_f32).
  void begin_data();
  // Checks that every tensor got all its bytes, flushes, closes and renames into place.
  void finish();

  // Bytes of the whole file once finished (known after begin_data()).
  uint64_t file_bytes() const { return file_bytes_; }
  const std::string& path() const { return path_; }

 private:
  void add_key(const std::string& key, uint32_t type);
  void put(const void* p, size_t n, std::vector<uint8_t>& out);
  void put_string(std::string_view s, std::vector<uint8_t>& out);
  void put_value(const gguf::Value& v, std::vector<uint8_t>& out);
  void emit(const void* p, uint64_t n) override;
  void on_next_tensor(size_t index) override;
  void pad_to(uint64_t position);

  std::string path_;
  std::string part_path_;
  uint32_t alignment_;
  AlignmentKey alignment_key_;
  std::FILE* file_ = nullptr;
  std::vector<uint8_t> metadata_;
  uint64_t metadata_count_ = 0;
  std::vector<std::string> keys_;
  uint64_t data_start_ = 0;    // file offset of the data section; tensor offsets count from it
  uint64_t position_ = 0;      // bytes written to the file so far
  uint64_t file_bytes_ = 0;
};

}  // namespace fineserve::model
