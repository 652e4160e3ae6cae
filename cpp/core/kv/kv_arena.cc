#include "kv/kv_arena.h"

#include <cstdlib>
#include <cstring>

#include "kv/kv_pool.h"

namespace fineserve::kv {
namespace {

class HostArena final : public KvArena {
 public:
  HostArena(uint8_t* base, uint64_t bytes) : base_(base), bytes_(bytes) {}
  ~HostArena() override { std::free(base_); }
  uint8_t* base() const override { return base_; }
  uint64_t bytes() const override { return bytes_; }
  std::string where() const override { return "host"; }
  void copy(uint64_t dst, uint64_t src, uint64_t bytes) override { std::memcpy(base_ + dst, base_ + src, bytes); }

 private:
  uint8_t* base_;
  uint64_t bytes_;
};

}  // namespace

std::unique_ptr<KvArena> make_host_arena(uint64_t bytes) {
  void* p = nullptr;
  // 2 MiB alignment lets the kernel back the pool with transparent huge pages.
  if (posix_memalign(&p, 2u << 20, bytes) != 0) {
    throw KvError(KvErrc::InvalidArgument,
                  "poolBytes = " + std::to_string(bytes) + ": could not allocate that much host memory");
  }
  return std::make_unique<HostArena>(static_cast<uint8_t*>(p), bytes);
}

bool cuda_device_of(const std::string& memory, int* device) {
  if (memory.rfind("cuda:", 0) != 0 || memory.size() <= 5 || memory.size() > 8 ||
      memory.find_first_not_of("0123456789", 5) != std::string::npos) {
    return false;
  }
  *device = std::stoi(memory.substr(5));
  return true;
}

std::unique_ptr<KvArena> make_arena(const std::string& memory, uint64_t bytes) {
  if (memory.empty() || memory == "none") return nullptr;
  if (memory == "host") return make_host_arena(bytes);
  int device = 0;
  if (cuda_device_of(memory, &device)) return make_cuda_arena(device, bytes);
  throw KvError(KvErrc::InvalidArgument,
                "memory = \"" + memory + "\": expected \"none\", \"host\" or \"cuda:N\"");
}

}  // namespace fineserve::kv
