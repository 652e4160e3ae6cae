// Test data for, and moving it to and from the device in, the CUDA backend's tests (plain C++ over
// cuda/common/device.h, so the same tests run under the SIMT emulator and on a GPU).
#pragma once

#include <algorithm>
#include <cstddef>
#include <random>
#include <vector>

#include "common/device.h"

namespace fineserve::test {

template <class T>
gpu::DeviceBuffer upload(const std::vector<T>& v) {
  gpu::DeviceBuffer b(std::max<size_t>(v.size(), 1) * sizeof(T), "test input");
  gpu::copy_to_device(b.as(), v.data(), v.size() * sizeof(T), nullptr);
  return b;
}

// A buffer of n T's poisoned with 0xFF (NaN as float, -1 as an int), so an element a kernel
// forgot to write shows.
template <class T>
gpu::DeviceBuffer poisoned(size_t n) {
  gpu::DeviceBuffer b(std::max<size_t>(n, 1) * sizeof(T), "test output");
  gpu::fill_bytes(b.as(), 0xFF, n * sizeof(T), nullptr);
  return b;
}

template <class T>
std::vector<T> download(const gpu::DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  gpu::copy_to_host(v.data(), b.as(), n * sizeof(T), nullptr);
  gpu::stream_sync(nullptr);
  return v;
}

// Fresh random inputs, never exactly zero: zeros hide unwritten outputs and wrong indexing.
inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -2.0f, float hi = 2.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) {
    do x = u(rng);
    while (x == 0.0f);
  }
  return v;
}

}  // namespace fineserve::test
