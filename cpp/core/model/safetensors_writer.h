// Writing the weights of a Hugging Face folder: one model.safetensors, or, when the tensors add up
// to more than a shard, model-0000i-of-0000n.safetensors plus model.safetensors.index.json. Data is
// streamed in as with GgufWriter: declare every tensor, begin_data(), append each tensor's data in
// declaration order, finish(). Files are written as ".part" and renamed into place by finish(),
// which also removes weight files of an earlier model in the folder that the new one does not
// overwrite.
// config.json and the tokenizer files are the caller's (see generate.cc).
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "model/tensor_stream.h"

namespace fineserve::model {

class SafetensorsWriter : public TensorStream {
 public:
  // `folder` is created when missing. `max_shard_bytes` = 0 keeps everything in one file; otherwise
  // a new shard starts when the next tensor would take a shard's data past it (a tensor larger
  // than a shard gets a shard of its own).
  explicit SafetensorsWriter(std::string folder, uint64_t max_shard_bytes = 0);
  ~SafetensorsWriter();  // without finish(): closes and removes the partial files

  // String entries of each file's "__metadata__" ({"format": "pt"} is always there).
  void add_metadata(const std::string& key, const std::string& value);
  // `shape` outermost first, as PyTorch and TensorView hold it.
  void add_tensor(const std::string& name, DType type, const std::vector<uint64_t>& shape);

  void begin_data();  // then TensorStream::write / write_f32
  void finish();

  // File names (relative to the folder) of the shards; known after begin_data().
  std::vector<std::string> files() const;
  uint64_t file_bytes() const { return file_bytes_; }  // all shards plus the index

 private:
  struct Shard {
    std::string file;
    std::vector<size_t> tensors;
    uint64_t header_bytes = 0;   // 8-byte length + padded JSON
    uint64_t data_bytes = 0;
  };

  std::string header_json(const Shard& shard) const;
  void open_shard(size_t index);
  void close_shard();
  void emit(const void* p, uint64_t n) override;
  void on_next_tensor(size_t index) override;
  void remove_stale_weights() const;

  std::string folder_;
  uint64_t max_shard_bytes_;
  std::map<std::string, std::string> metadata_;
  std::vector<size_t> shard_of_;  // per tensor; its offset is within that shard's data
  std::vector<Shard> shards_;
  std::FILE* file_ = nullptr;
  size_t open_ = SIZE_MAX;       // shard being written
  uint64_t file_bytes_ = 0;
};

// `s` as a JSON string literal, quotes included.
std::string json_quote(const std::string& s);

}  // namespace fineserve::model
