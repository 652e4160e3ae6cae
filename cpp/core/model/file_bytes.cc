#include "model/file_bytes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "model/model_error.h"

namespace fineserve::model {

namespace {

[[noreturn]] void fail(ModelErrc code, const std::string& path, const std::string& what, int err) {
  throw ModelError(code, path + ": " + what + (err ? std::string(" (") + std::strerror(err) + ")" : ""));
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

FileBytes::FileBytes(const std::string& path, const OnRead& on_read, uint64_t chunk_bytes) : path_(path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    int err = errno;
    fail(err == ENOENT || err == ENOTDIR ? ModelErrc::NotFound : ModelErrc::Corrupt, path,
         "cannot open the file", err);
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail(ModelErrc::Corrupt, path, "cannot stat the file", errno);
  if (S_ISDIR(st.st_mode)) fail(ModelErrc::NotFound, path, "is a folder, expected a file", 0);
  if (!S_ISREG(st.st_mode)) fail(ModelErrc::Corrupt, path, "is not a regular file", 0);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > 0) {
    // Anonymous pages: page aligned (every tensor alignment a format asks for), and discard()
    // can return them to the kernel one page at a time.
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail(ModelErrc::Corrupt, path, "cannot allocate " + std::to_string(size) + " bytes for the file", errno);
    data_ = static_cast<uint8_t*>(p);
    size_ = size;
    // 2 MiB pages where the kernel offers them: a 250 MB file then takes ~125 page faults to
    // fill instead of ~61,000, which is most of the copy's cost over the old mapping.
    ::madvise(p, size, MADV_HUGEPAGE);
  }
  ::posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  chunk_bytes = std::max<uint64_t>(chunk_bytes, 1);
  for (uint64_t done = 0; done < size_;) {
    const uint64_t want = std::min(chunk_bytes, size_ - done);
    uint64_t got = 0;
    while (got < want) {
      const ssize_t n = ::pread(f.fd, data_ + done + got, want - got, static_cast<off_t>(done + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        release();
        fail(ModelErrc::Corrupt, path, "cannot read the file at byte " + std::to_string(done + got), err);
      }
      if (n == 0) {
        const uint64_t at = done + got, expected = size;
        release();
        fail(ModelErrc::Corrupt, path,
             "the file ended at byte " + std::to_string(at) + " while being read, though it had " +
                 std::to_string(expected) + " bytes when opened (truncated or replaced during the load?)",
             0);
      }
      got += static_cast<uint64_t>(n);
    }
    done += want;
    if (on_read && !on_read(done, size_)) {
      release();
      throw ModelError(ModelErrc::Cancelled, path + ": loading cancelled by the progress callback");
    }
  }
  // Nothing writes these bytes again: a stray write faults here rather than changing a weight.
  if (data_) ::mprotect(data_, size_, PROT_READ);
  if (size == 0 && on_read && !on_read(0, 0)) {
    throw ModelError(ModelErrc::Cancelled, path + ": loading cancelled by the progress callback");
  }
}

FileBytes::~FileBytes() { release(); }

FileBytes::FileBytes(FileBytes&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

FileBytes& FileBytes::operator=(FileBytes&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void FileBytes::discard(const uint8_t* p, uint64_t bytes) noexcept {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + bytes;
  const uintptr_t fb = reinterpret_cast<uintptr_t>(data_);
  if (data_ == nullptr || begin < fb || end > fb + size_) return;
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void FileBytes::release() noexcept {
  if (data_) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace fineserve::model
