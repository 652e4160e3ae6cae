// Writing GGUF v3 files: metadata of the common types, then F32/F16/BF16 tensors whose data is
// streamed in (a multi-GB model never has to be in memory at once).
//
// Use: add metadata and declare every tensor (name, type, shape), call begin_data(), then append
// each tensor's data in declaration order with write() / write_f32() (TensorStream), in as many
// pieces as you like, and finish(). The file is written as `path + ".part"` and renamed into place
// by finish(), so an interrupted write never leaves a file that looks complete.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "model/tensor_stream.h"

namespace fineserve::model {

class GgufWriter : public TensorStream {
 public:
  // `alignment` becomes general.alignment: every tensor's data starts at a multiple of it.
  explicit GgufWriter(std::string path, uint32_t alignment = 32);
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
  void put_string(const std::string& s, std::vector<uint8_t>& out);
  void emit(const void* p, uint64_t n) override;
  void on_next_tensor(size_t index) override;
  void pad_to(uint64_t position);

  std::string path_;
  std::string part_path_;
  uint32_t alignment_;
  std::FILE* file_ = nullptr;
  std::vector<uint8_t> metadata_;
  uint64_t metadata_count_ = 0;
  std::vector<std::string> keys_;
  uint64_t data_start_ = 0;    // file offset of the data section; tensor offsets count from it
  uint64_t position_ = 0;      // bytes written to the file so far
  uint64_t file_bytes_ = 0;
};

}  // namespace fineserve::model
