// device.h over the CUDA runtime.
#include <cuda_runtime.h>

#include "common/device.h"

namespace fineserve::gpu {

void check(int err, const char* what) {
  if (err == cudaSuccess) return;
  auto e = static_cast<cudaError_t>(err);
  cudaGetLastError();  // clear a non-sticky error so later calls start clean
  throw GpuError(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

bool simulated() { return false; }

void set_device(int device) { check(cudaSetDevice(device), "cudaSetDevice"); }

void* device_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    check(err, (std::string("cudaMalloc of ") + std::to_string(bytes) + " bytes for " + what).c_str());
  }
  return p;
}

void device_free(void* p) noexcept {
  if (p != nullptr) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes, Stream s) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(s)), "cudaMemcpyAsync H2D");
}

void copy_to_host(void* dst, const void* src, size_t bytes, Stream s) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(s)), "cudaMemcpyAsync D2H");
}

void copy_on_device(void* dst, const void* src, size_t bytes, Stream s) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(s)), "cudaMemcpyAsync D2D");
}

void fill_bytes(void* dst, uint8_t value, size_t bytes, Stream s) {
  check(cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(s)), "cudaMemsetAsync");
}

Stream stream_create() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  return s;
}

void stream_destroy(Stream s) noexcept {
  if (s != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(s));
}

void stream_sync(Stream s) { check(cudaStreamSynchronize(static_cast<cudaStream_t>(s)), "cudaStreamSynchronize"); }

EventTimer::EventTimer(Stream s) : stream_(s) {
  cudaEvent_t a = nullptr, b = nullptr;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  begin_ = a;
  end_ = b;
}

EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(begin_));
  cudaEventDestroy(static_cast<cudaEvent_t>(end_));
}

void EventTimer::start() {
  check(cudaEventRecord(static_cast<cudaEvent_t>(begin_), static_cast<cudaStream_t>(stream_)), "cudaEventRecord");
}

double EventTimer::stop_ms() {
  check(cudaEventRecord(static_cast<cudaEvent_t>(end_), static_cast<cudaStream_t>(stream_)), "cudaEventRecord");
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(end_)), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(begin_), static_cast<cudaEvent_t>(end_)),
        "cudaEventElapsedTime");
  return ms;
}

DeviceInfo device_info(int device) {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return DeviceInfo{p.name, p.multiProcessorCount, p.major, p.minor, static_cast<uint64_t>(p.totalGlobalMem)};
}

}  // namespace fineserve::gpu
