// Device memory, streams and errors of the CUDA backend, in plain C++ (no CUDA headers), so the
// executor and the tests are ordinary C++. Two implementations: device_cuda.cu (the CUDA runtime)
// and simt/device_simt.cc (host memory, for the SIMT emulator). Pointers returned here are device
// pointers: only kernels and the copy functions may touch them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace fineserve::gpu {

// A cudaStream_t; nullptr is the legacy default stream.
using Stream = void*;

struct GpuError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// True in the SIMT build: "device" memory is host memory and kernels run on the CPU.
bool simulated();

// Selects the device for the calling thread (cudaSetDevice).
void set_device(int device);

void* device_alloc(size_t bytes, const char* what);
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, size_t bytes, Stream s);
void copy_to_host(void* dst, const void* src, size_t bytes, Stream s);
void copy_on_device(void* dst, const void* src, size_t bytes, Stream s);
void fill_bytes(void* dst, uint8_t value, size_t bytes, Stream s);

Stream stream_create();
void stream_destroy(Stream s) noexcept;
// Waits for the stream's work; a fault in an earlier kernel is reported here.
void stream_sync(Stream s);

// Elapsed device time between start() and stop() on a stream, from CUDA events (a steady clock
// under the emulator), for benchmarks: host clocks would time the launches, not the work.
class EventTimer {
 public:
  explicit EventTimer(Stream s);
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  // Waits for the work enqueued since start() and returns its milliseconds.
  double stop_ms();

 private:
  Stream stream_;
  void* begin_ = nullptr;
  void* end_ = nullptr;
  double host_start_ = 0;
};

// The device's name and memory bandwidth-relevant facts, for benchmark reports.
struct DeviceInfo {
  std::string name;
  int sm_count = 0, cc_major = 0, cc_minor = 0;
  uint64_t memory_bytes = 0;
};
DeviceInfo device_info(int device);

#if defined(__CUDACC__)
// Throws GpuError "what: cudaErrorX (text)" unless err is cudaSuccess (nvcc only).
void check(int err, const char* what);
#endif

// An owned device allocation (moves, never copies).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, const char* what) : p_(bytes ? device_alloc(bytes, what) : nullptr), bytes_(bytes) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(p_);
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { device_free(p_); }

  template <class T = void>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }
  // Grows (never shrinks) to at least `bytes`; the contents are not kept.
  void reserve(size_t bytes, const char* what) {
    if (bytes > bytes_) *this = DeviceBuffer(bytes, what);
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace fineserve::gpu
