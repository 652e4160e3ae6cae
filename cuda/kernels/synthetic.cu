// Random weights and KV contents made on the device (kernels.h, "synthetic data"). One thread per
// byte: each computes the whole field its byte belongs to (an element, a scale) and stores its own
// byte, which keeps every format's layout in one place at the price of redundant arithmetic, a
// fine trade for a fill that runs once per benchmark.
#include <cmath>

#include "common/cuda_lang.cuh"
#include "common/launch.cuh"
#include "common/numeric.cuh"
#include "kernels/kernels.h"

namespace fineserve::gpu {

namespace {

__device__ __forceinline__ uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) from (seed, row, index).
__device__ __forceinline__ float uniform(uint64_t seed, uint64_t row, uint64_t i) {
  return static_cast<float>(mix(seed ^ mix(row * 0x100000001B3ull + i)) >> 40) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ uint8_t byte_of(uint32_t v, uint32_t k) { return static_cast<uint8_t>(v >> (8 * k)); }

struct FillArgs {
  uint8_t* data;
  model::DType dtype;
  uint32_t rows, cols, group;
  uint64_t row_bytes, data_offset;
  float amp;  // 1 / sqrt(cols)
  uint64_t seed;
};

__device__ uint8_t weight_byte(const FillArgs& a, uint64_t row, uint64_t b) {
  const float amp = a.amp;
  auto value = [&](uint64_t e) { return (2.0f * uniform(a.seed, row, e) - 1.0f) * amp; };
  switch (a.dtype) {
    case model::DType::F32: return byte_of(__float_as_uint(value(b / 4)), b % 4);
    case model::DType::F16: return byte_of(f32_to_f16(value(b / 2)), b % 2);
    case model::DType::BF16: return byte_of(f32_to_bf16(value(b / 2)), b % 2);
    case model::DType::W8A8:
    case model::DType::FP8: {
      const bool int8 = a.dtype == model::DType::W8A8;
      const float scale = amp / (int8 ? 127.0f : 448.0f);
      if (b < 4) return byte_of(__float_as_uint(scale), b);
      if (b < a.data_offset) return 0;
      const uint64_t e = b - a.data_offset;
      if (e >= a.cols) return 0;
      const float q = (2.0f * uniform(a.seed, row, e) - 1.0f) * (int8 ? 127.0f : 448.0f);
      return int8 ? static_cast<uint8_t>(static_cast<int8_t>(rintf(q))) : f32_to_fp8(q);
    }
    case model::DType::W4A16: {
      const uint64_t groups = (a.cols + a.group - 1) / a.group;
      if (b < 4 * groups) {
        // scale (2 amp / 15) and min (-amp) of the group: q in 0..15 decodes to [-amp, amp].
        const uint16_t v = (b % 4) < 2 ? f32_to_f16(2.0f * amp / 15.0f) : f32_to_f16(-amp);
        return byte_of(v, b % 2);
      }
      if (b < a.data_offset) return 0;
      const uint64_t at = b - a.data_offset, sub = at / 16, j = at % 16;
      const uint64_t lo = sub * 32 + j, hi = lo + 16;
      const uint32_t nlo = lo < a.cols ? static_cast<uint32_t>(uniform(a.seed, row, lo) * 16.0f) & 15u : 0u;
      const uint32_t nhi = hi < a.cols ? static_cast<uint32_t>(uniform(a.seed, row, hi) * 16.0f) & 15u : 0u;
      return static_cast<uint8_t>(nlo | (nhi << 4));
    }
    case model::DType::W4A8: {
      // row_scale a power of two putting the group scale amp / 7 in (224, 448].
      const float gs = amp / 7.0f;
      const float row_scale = exp2f(ceilf(log2f(gs / 448.0f)));
      const uint64_t groups = (a.cols + a.group - 1) / a.group;
      if (b < 4) return byte_of(__float_as_uint(row_scale), b);
      if (b < 4 + groups) return f32_to_fp8(gs / row_scale);
      if (b < a.data_offset) return 0;
      const uint64_t at = b - a.data_offset, sub = at / 16, j = at % 16;
      const uint64_t lo = sub * 32 + j, hi = lo + 16;
      // Nibble n = q + 8 with q in -7..7; padding is 8 (q = 0).
      auto nib = [&](uint64_t e) { return e < a.cols ? 1u + (static_cast<uint32_t>(uniform(a.seed, row, e) * 15.0f) % 15u) : 8u; };
      return static_cast<uint8_t>(nib(lo) | (nib(hi) << 4));
    }
    default: return 0;
  }
}

__global__ void fill_weights_kernel(FillArgs a) {
  const uint64_t total = a.row_bytes * a.rows;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    a.data[i] = weight_byte(a, i / a.row_bytes, i % a.row_bytes);
  }
}

__global__ void fill_finite_kernel(uint8_t* p, uint64_t n, uint64_t seed) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    p[i] = static_cast<uint8_t>(mix(seed ^ i) & 0x3Fu);
  }
}

__global__ void fill_f32_kernel(float* p, uint64_t n, float value) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    p[i] = value;
  }
}

// A grid-stride loop over n items: enough blocks to fill a large GPU, few under the emulator.
dim3 grid_for(uint64_t n) {
  const uint64_t blocks = (n + 255) / 256;
  return dim3(static_cast<unsigned>(blocks < (FS_SIMT ? 4u : 65536u) ? (blocks ? blocks : 1) : (FS_SIMT ? 4u : 65536u)));
}

}  // namespace

void fill_synthetic(const DeviceMatrix& m, uint64_t seed, Stream stream) {
  FillArgs a{const_cast<uint8_t*>(m.data), m.dtype, m.rows, m.cols, m.group, m.row_bytes, m.data_offset,
             1.0f / std::sqrt(static_cast<float>(m.cols)), seed};
  const uint64_t n = m.row_bytes * m.rows;
  launch("fill_weights", fill_weights_kernel, grid_for(n), dim3(256), 0, stream, a);
}

void fill_finite_bytes(uint8_t* p, size_t bytes, uint64_t seed, Stream stream) {
  launch("fill_finite_bytes", fill_finite_kernel, grid_for(bytes), dim3(256), 0, stream, p, uint64_t{bytes}, seed);
}

void fill_f32(float* p, size_t n, float value, Stream stream) {
  launch("fill_f32", fill_f32_kernel, grid_for(n), dim3(256), 0, stream, p, uint64_t{n}, value);
}

}  // namespace fineserve::gpu
