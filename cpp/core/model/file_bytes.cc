#include "model/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "model/model_error.h"

namespace fineserve::model {

namespace {

[[noreturn]] void fail(ModelErrc code, const std::string& path, const std::string& what, int err) {
  throw ModelError(code, path + ": " + what + (err ? std::string(" (") + std::strerror(err) + ")" : ""));
}

// Closes the descriptor on every path out: the mapping keeps the file alive on its own.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
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
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ == 0) return;  // mmap rejects length 0; an empty file has no bytes to view
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) fail(ModelErrc::Corrupt, path, "cannot map the file", errno);
  data_ = static_cast<const uint8_t*>(p);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::release() noexcept {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace fineserve::model
