// The bytes of a whole model file, read into memory this process owns (RAII).
//
// Why not mmap: weights served from a file mapping fault with SIGBUS, which kills the process,
// when the file is truncated while mapped (a user overwriting a model in place with `cp`, a
// download restarting, a hostile caller). Reading the file with pread costs one copy at load
// (about what the page faults of a mapping's first pass cost) and makes a loaded model
// independent of its files: truncating, rewriting or deleting them later changes nothing, and a
// file that shrinks while it is being read is a ModelError naming it, never a fault. The memory
// is anonymous and page aligned, so discard() can give back the pages of tensors replaced at
// load (quantization) as the old read-only mapping's MADV_DONTNEED did.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace fineserve::model {

class FileBytes {
 public:
  // Called after each chunk with the bytes read so far and the file's size; returning false
  // stops the read with ModelError(Cancelled).
  using OnRead = std::function<bool(uint64_t done, uint64_t total)>;
  static constexpr uint64_t kChunkBytes = 64ull << 20;

  FileBytes() = default;
  // Throws ModelError(NotFound) when `path` does not exist (or is a folder), ModelError(Corrupt)
  // when it is not a regular file, cannot be read, or ends before the size it had when opened
  // (truncated while being read); every message names the path.
  explicit FileBytes(const std::string& path, const OnRead& on_read = {}, uint64_t chunk_bytes = kChunkBytes);
  ~FileBytes();
  FileBytes(FileBytes&& other) noexcept;
  FileBytes& operator=(FileBytes&& other) noexcept;
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  const uint8_t* data() const { return data_; }  // nullptr for an empty file
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Gives back the pages wholly inside [p, p + bytes), bytes no view reads any more (a tensor
  // replaced at load). They read as zeros afterwards. No-op for a range outside this file.
  void discard(const uint8_t* p, uint64_t bytes) noexcept;

 private:
  void release() noexcept;
  std::string path_;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace fineserve::model
