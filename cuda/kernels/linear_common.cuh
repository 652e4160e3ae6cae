// What the linear kernels (linear_gemv.cuh, linear_gemm.cuh, linear.cu) share: 16-byte loads,
// the E4M3 decodings and the form the activations take in the scratch buffer.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/cuda_lang.cuh"
#include "common/numeric.cuh"

namespace fineserve::gpu::linear_detail {

// How one call's activations sit in `scratch`: per token, `stride` elements (cols rounded up so
// every 16-byte weight vector and every tensor-core k tile has its activations, zero padded).
enum class ActKind : uint8_t {
  F32,         // x' (GEMV of F32, F16, BF16, W4A16)
  F16,         // f16(x') (tensor-core F16 and W4A16)
  BF16,        // bf16(x') (tensor-core BF16)
  I8,          // W8A8: q = rint(x' / sx), sx = amax / 127
  E4M3,        // FP8 / W4A8 GEMV: e4m3(x' / sx), sx = amax / 448
  E4M3_AS_F16  // FP8 / W4A8 tensor-core: the same e4m3 values, held exactly as f16
};

__host__ __device__ constexpr uint32_t act_bytes(ActKind k) {
  return k == ActKind::F32 ? 4 : (k == ActKind::I8 || k == ActKind::E4M3) ? 1 : 2;
}

#if FS_SIMT
struct alignas(16) Vec16 {
  uint32_t x, y, z, w;
};
#else
using Vec16 = uint4;
#endif

// Activations: read by every row's warp, so through the read-only cache where they stay.
__device__ __forceinline__ Vec16 load16(const void* p) {
#if FS_SIMT
  Vec16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
#else
  return __ldg(static_cast<const uint4*>(p));
#endif
}

// Weights: each byte is read once per call, so streamed past the caches (evict first).
__device__ __forceinline__ Vec16 load16_stream(const void* p) {
#if FS_SIMT
  return load16(p);
#else
  return __ldcs(static_cast<const uint4*>(p));
#endif
}

__device__ __forceinline__ uint32_t word(const Vec16& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// E4M3 (never NaN here: the quantizer saturates) to f32 by placing its bits in an f32 and
// rebiasing the exponent (7 -> 127) with one multiply; subnormals come out right too.
__device__ __forceinline__ float e4m3_to_f32(uint32_t b) {
  return __uint_as_float(((b & 0x80u) << 24) | ((b & 0x7Fu) << 20)) * 0x1p120f;
}

// Two E4M3 bytes (the low 16 bits) to two f16 holding the values times 2^-8: the same bit move
// into f16's wider exponent, without the rebias multiply (the caller folds 2^8 into its scale).
// Exact, subnormals included.
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2_over256(uint32_t two) {
  return ((two & 0x7Fu) << 7) | ((two & 0x80u) << 8) | ((two & 0x7F00u) << 15) | ((two & 0x8000u) << 16);
}

__device__ __forceinline__ int nibble_of(const Vec16& v, int piece, int j) {
  // Piece p of a 32-element sub-block holds elements 8p..8p+7: the low nibbles of bytes
  // (p & 1) * 8 .. + 7 for p < 2, the high nibbles of the same bytes for p >= 2.
  const uint32_t w = word(v, (piece & 1) * 2 + j / 4);
  return static_cast<int>((w >> (8 * (j % 4) + (piece >= 2 ? 4 : 0))) & 15u);
}

// Scalars of a row header (aligned by the layouts of quant/weight_format.h).
template <class T>
__device__ __forceinline__ T scalar_at(const void* p) {
#if FS_SIMT
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
#else
  return __ldg(static_cast<const T*>(p));
#endif
}
__device__ __forceinline__ float f32_at(const uint8_t* p) { return scalar_at<float>(p); }
__device__ __forceinline__ float f16_at(const uint8_t* p) { return f16_to_f32(scalar_at<uint16_t>(p)); }

}  // namespace fineserve::gpu::linear_detail
