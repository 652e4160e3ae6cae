// The one allocation a KV Slab is carved from: host memory for the CPU backend, device memory for
// CUDA. The slab only needs a base address; kernels add block offsets to it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace fineserve::kv {

class KvArena {
 public:
  virtual ~KvArena() = default;
  // Host pointer for "host", device pointer for "cuda:N" (not dereferenceable on the host).
  virtual uint8_t* base() const = 0;
  virtual uint64_t bytes() const = 0;
  // "host" or "cuda:N".
  virtual std::string where() const = 0;
  // Copies `bytes` between two non-overlapping ranges of the arena (offsets from base()).
  virtual void copy(uint64_t dst, uint64_t src, uint64_t bytes) = 0;
};

// 2 MiB-aligned host memory, left untouched so pages are committed only as blocks are written.
// Throws KvError(InvalidArgument) naming the size when the allocation fails.
std::unique_ptr<KvArena> make_host_arena(uint64_t bytes);

// cudaMalloc on `device`. Implemented in cuda/kv_arena.cu, or in cpp/core/cuda_absent.cc for
// builds without CUDA, where it throws KvError saying so.
std::unique_ptr<KvArena> make_cuda_arena(int device, uint64_t bytes);

// True, with the device index, when `memory` names a GPU: "cuda:N".
bool cuda_device_of(const std::string& memory, int* device);

// "none" -> nullptr, "host", or "cuda:N"; KvError(InvalidArgument) naming the value otherwise.
std::unique_ptr<KvArena> make_arena(const std::string& memory, uint64_t bytes);

}  // namespace fineserve::kv
