// Device memory for a KV Slab: one cudaMalloc made when the pool is created, freed with it.
#include <cuda_runtime.h>

#include <string>

#include "kv/kv_arena.h"
#include "kv/kv_pool.h"

namespace fineserve::kv {
namespace {

[[noreturn]] void fail(int device, uint64_t bytes, const char* what, cudaError_t err) {
  cudaGetLastError();  // clear the sticky error so later calls start clean
  throw KvError(KvErrc::InvalidArgument, "memory = \"cuda:" + std::to_string(device) + "\", poolBytes = " +
                                             std::to_string(bytes) + ": " + what + " failed: " +
                                             cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

class CudaArena final : public KvArena {
 public:
  CudaArena(int device, uint8_t* base, uint64_t bytes) : device_(device), base_(base), bytes_(bytes) {}
  ~CudaArena() override {
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device_);
    cudaFree(base_);
    cudaSetDevice(previous);
  }
  uint8_t* base() const override { return base_; }
  uint64_t bytes() const override { return bytes_; }
  std::string where() const override { return "cuda:" + std::to_string(device_); }
  void copy(uint64_t dst, uint64_t src, uint64_t bytes) override {
    // Synchronous on the legacy stream: compaction is rare and must finish before the moved
    // blocks are read through their new ids.
    cudaError_t err = cudaMemcpy(base_ + dst, base_ + src, bytes, cudaMemcpyDeviceToDevice);
    if (err != cudaSuccess) fail(device_, bytes_, "cudaMemcpy (KV compaction)", err);
  }

 private:
  int device_;
  uint8_t* base_;
  uint64_t bytes_;
};

}  // namespace

std::unique_ptr<KvArena> make_cuda_arena(int device, uint64_t bytes) {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) fail(device, bytes, "cudaSetDevice", err);
  void* p = nullptr;
  err = cudaMalloc(&p, bytes);
  cudaSetDevice(previous);
  if (err != cudaSuccess) fail(device, bytes, "cudaMalloc", err);
  return std::make_unique<CudaArena>(device, static_cast<uint8_t*>(p), bytes);
}

}  // namespace fineserve::kv
