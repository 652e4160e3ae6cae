// device.h for the SIMT emulator: device memory is host memory and every call is synchronous,
// because kernels run to completion inside their launch.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "common/device.h"

namespace fineserve::gpu {

bool simulated() { return true; }

void set_device(int) {}

void* device_alloc(size_t bytes, const char* what) {
  // 256-byte aligned like cudaMalloc, so alignment bugs show here too.
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (p == nullptr) throw GpuError(std::string("allocation of ") + std::to_string(bytes) + " bytes for " + what + " failed");
  std::memset(p, 0xFF, bytes);  // like fresh device memory, not zero
  return p;
}

void device_free(void* p) noexcept { std::free(p); }

void copy_to_device(void* dst, const void* src, size_t bytes, Stream) { std::memcpy(dst, src, bytes); }
void copy_to_host(void* dst, const void* src, size_t bytes, Stream) { std::memcpy(dst, src, bytes); }
void copy_on_device(void* dst, const void* src, size_t bytes, Stream) { std::memmove(dst, src, bytes); }
void fill_bytes(void* dst, uint8_t value, size_t bytes, Stream) { std::memset(dst, value, bytes); }

Stream stream_create() { return nullptr; }
void stream_destroy(Stream) noexcept {}
void stream_sync(Stream) {}

namespace {
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

EventTimer::EventTimer(Stream s) : stream_(s) {}
EventTimer::~EventTimer() = default;
void EventTimer::start() { host_start_ = now_ms(); }
double EventTimer::stop_ms() { return now_ms() - host_start_; }

DeviceInfo device_info(int) { return DeviceInfo{"SIMT emulator (host CPU)", 1, 0, 0, 0}; }

}  // namespace fineserve::gpu
