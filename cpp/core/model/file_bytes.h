// A read-only memory mapping of a whole file (RAII). Model weights are used in place from the
// mapping, so loading costs page cache rather than heap, and unloading is one munmap. Like every
// mmap-based loader (llama.cpp's included), it assumes the file is not truncated while mapped:
// pages past a new end would fault with SIGBUS. Replacing the file (a rename) is safe.
#pragma once

#include <cstdint>
#include <string>

namespace fineserve::model {

class MappedFile {
 public:
  // Throws ModelError(NotFound) when `path` does not exist (or is a folder), ModelError(Corrupt)
  // when it cannot be opened or mapped; both messages name the path.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }  // nullptr for an empty file
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace fineserve::model
