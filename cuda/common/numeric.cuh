// Scalar conversions and warp reductions shared by the kernels. Under nvcc the conversions are the
// hardware instructions; under the SIMT emulator they are cpp/core's bit-exact host versions, which
// round the same way (to nearest even), so both builds compute the same values.
#pragma once

#include <cstdint>

#include "common/cuda_lang.cuh"
#include "quant/fp8.h"

#if FS_SIMT
#include "simd/half.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace fineserve::gpu {

__device__ __forceinline__ float f16_to_f32(uint16_t h) {
#if FS_SIMT
  return simd::f16_to_f32_scalar(h);
#else
  return __half2float(__ushort_as_half(h));
#endif
}

__device__ __forceinline__ uint16_t f32_to_f16(float f) {
#if FS_SIMT
  return simd::f32_to_f16_scalar(f);
#else
  return __half_as_ushort(__float2half_rn(f));
#endif
}

__device__ __forceinline__ float bf16_to_f32(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }

__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
#if FS_SIMT
  return simd::f32_to_bf16_scalar(f);
#else
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#endif
}

__device__ __forceinline__ float fp8_to_f32(uint8_t b) { return quant::fp8_to_f32(b); }
__device__ __forceinline__ uint8_t f32_to_fp8(float f) { return quant::f32_to_fp8(f); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
  return v;
}

__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

}  // namespace fineserve::gpu
