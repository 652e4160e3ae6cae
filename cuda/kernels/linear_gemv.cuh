// The decode path of linear(): y = x' W^T for a few tokens, bound by reading W. A warp owns
// kRowsPerWarp output rows; its lanes stride the rows in 16-byte vectors (so a warp reads 512
// contiguous bytes per row per step, coalesced), decode each vector once in registers and use it
// for all T tokens of the tile (T a template parameter: the accumulators stay in registers). The
// activations, prepared once per call in scratch (linear.cu), are re-read by every warp and so
// come from L1/L2; only the weights come from memory, once per call whatever T is.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/cuda_lang.cuh"
#include "common/numeric.cuh"
#include "kernels/linear_common.cuh"
#include "model/tensor.h"

namespace fineserve::gpu::linear_detail {

inline constexpr int kGemvWarps = 4;
inline constexpr int kRowsPerWarp = 2;  // rows sharing one load of each activation vector
inline constexpr int kRowsPerGemvBlock = kGemvWarps * kRowsPerWarp;
inline constexpr int kGemvMaxTokens = 8;  // larger batches use token tiles (or the GEMM)

struct GemvParams {
  const uint8_t* w = nullptr;
  uint64_t row_bytes = 0;
  uint32_t data_offset = 0;  // the quantized data's start within a row
  uint32_t rows = 0, cols = 0, group = 0;
  uint32_t nvec = 0;         // 16-byte vectors per row read as such; plain types do the rest per element
  const uint8_t* act = nullptr;
  uint32_t act_stride = 0;   // elements per token
  const float* token_scale = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
  uint32_t token0 = 0;       // first token of blockIdx.y == 0
};

using model::DType;

template <DType D>
struct GemvFormat;

// Elements per 16-byte weight vector, decoded kPiece at a time into floats.
template <>
struct GemvFormat<DType::F32> {
  static constexpr int kElems = 4, kPiece = 4;
  static constexpr ActKind kAct = ActKind::F32;
};
template <>
struct GemvFormat<DType::F16> {
  static constexpr int kElems = 8, kPiece = 8;
  static constexpr ActKind kAct = ActKind::F32;
};
template <>
struct GemvFormat<DType::BF16> {
  static constexpr int kElems = 8, kPiece = 8;
  static constexpr ActKind kAct = ActKind::F32;
};
template <>
struct GemvFormat<DType::W8A8> {
  static constexpr int kElems = 16, kPiece = 16;
  static constexpr ActKind kAct = ActKind::I8;
};
template <>
struct GemvFormat<DType::FP8> {
  static constexpr int kElems = 16, kPiece = 8;
  static constexpr ActKind kAct = ActKind::E4M3;
};
template <>
struct GemvFormat<DType::W4A16> {
  static constexpr int kElems = 32, kPiece = 8;
  static constexpr ActKind kAct = ActKind::F32;
};
template <>
struct GemvFormat<DType::W4A8> {
  static constexpr int kElems = 32, kPiece = 8;
  static constexpr ActKind kAct = ActKind::E4M3;
};

// One 16-byte weight vector with what decoding it needs from the row header.
struct RawVec {
  Vec16 bits;
  float scale, offset;
};

template <DType D>
__device__ __forceinline__ RawVec load_weights(const uint8_t* row, uint32_t v, const GemvParams& p) {
  RawVec r;
  r.bits = load16_stream(row + p.data_offset + 16ull * v);
  r.scale = 1.0f;
  r.offset = 0.0f;
  if constexpr (D == DType::W4A16 || D == DType::W4A8) {
    const uint32_t g = 32 * v / p.group;  // a sub-block never straddles groups (group % 32 == 0)
    if constexpr (D == DType::W4A16) {
      r.scale = f16_at(row + 4 * g);
      r.offset = f16_at(row + 4 * g + 2);
    } else {
      r.scale = e4m3_to_f32(row[4 + g]);
      r.offset = -8.0f * r.scale;  // exact: w = (n - 8) * scale
    }
  }
  return r;
}

// Elements piece * kPiece .. + kPiece - 1 of the vector as floats.
template <DType D>
__device__ __forceinline__ void decode_weights(const RawVec& r, int piece, float (&w)[GemvFormat<D>::kPiece]) {
  constexpr int kPiece = GemvFormat<D>::kPiece;
  if constexpr (D == DType::F32) {
#pragma unroll
    for (int j = 0; j < 4; ++j) w[j] = __uint_as_float(word(r.bits, j));
  } else if constexpr (D == DType::F16 || D == DType::BF16) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const uint16_t h = static_cast<uint16_t>(word(r.bits, j / 2) >> (16 * (j % 2)));
      w[j] = D == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  } else if constexpr (D == DType::FP8) {
#pragma unroll
    for (int j = 0; j < kPiece; ++j) {
      const int b = piece * kPiece + j;
      w[j] = e4m3_to_f32((word(r.bits, b / 4) >> (8 * (b % 4))) & 0xFFu);
    }
  } else {  // W4A16, W4A8: n * scale + offset, once per row for all the tile's tokens
#pragma unroll
    for (int j = 0; j < 8; ++j) w[j] = fmaf(static_cast<float>(nibble_of(r.bits, piece, j)), r.scale, r.offset);
  }
}

// Activations e .. e + kPiece - 1 of one token as floats.
template <DType D>
__device__ __forceinline__ void load_acts(const uint8_t* token_row, uint32_t e, float (&a)[GemvFormat<D>::kPiece]) {
  constexpr int kPiece = GemvFormat<D>::kPiece;
  if constexpr (GemvFormat<D>::kAct == ActKind::F32) {
    const float* f = reinterpret_cast<const float*>(token_row) + e;
#pragma unroll
    for (int q = 0; q < kPiece / 4; ++q) {
      const Vec16 v = load16(f + 4 * q);
#pragma unroll
      for (int j = 0; j < 4; ++j) a[4 * q + j] = __uint_as_float(word(v, j));
    }
  } else {  // E4M3, kPiece == 8
    const uint32_t lo = scalar_at<uint32_t>(token_row + e), hi = scalar_at<uint32_t>(token_row + e + 4);
#pragma unroll
    for (int j = 0; j < 8; ++j) a[j] = e4m3_to_f32(((j < 4 ? lo : hi) >> (8 * (j % 4))) & 0xFFu);
  }
}

template <DType D>
__device__ __forceinline__ float plain_weight(const uint8_t* row, uint32_t e) {
  if constexpr (D == DType::F32) return scalar_at<float>(row + 4ull * e);
  const uint16_t h = scalar_at<uint16_t>(row + 2ull * e);
  return D == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

template <DType D, int T>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_kernel(GemvParams p) {
  using F = GemvFormat<D>;
  constexpr int R = kRowsPerWarp;
  constexpr bool kInt = D == DType::W8A8;
  using Acc = typename std::conditional<kInt, int32_t, float>::type;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const uint32_t r0 = (blockIdx.x * kGemvWarps + warp) * R;
  if (r0 >= p.rows) return;  // whole warps only: nothing below synchronises the block
  const uint32_t tok0 = p.token0 + blockIdx.y * T;
  const uint64_t act_row_bytes = static_cast<uint64_t>(p.act_stride) * act_bytes(F::kAct);
  const uint8_t* rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const uint32_t row = r0 + r < p.rows ? r0 + r : p.rows - 1;  // a missing last row reads its neighbour
    rows[r] = p.w + static_cast<uint64_t>(row) * p.row_bytes;
  }
  const uint8_t* act0 = p.act + tok0 * act_row_bytes;

  Acc acc[R][T] = {};
  for (uint32_t v = lane; v < p.nvec; v += 32) {
    if constexpr (kInt) {
      Vec16 wv[R];
#pragma unroll
      for (int r = 0; r < R; ++r) wv[r] = load16_stream(rows[r] + p.data_offset + 16ull * v);
#pragma unroll
      for (int t = 0; t < T; ++t) {
        const Vec16 xv = load16(act0 + t * act_row_bytes + 16ull * v);
#pragma unroll
        for (int r = 0; r < R; ++r) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            acc[r][t] = __dp4a(static_cast<int>(word(wv[r], j)), static_cast<int>(word(xv, j)), acc[r][t]);
          }
        }
      }
    } else {
      RawVec raw[R];
#pragma unroll
      for (int r = 0; r < R; ++r) raw[r] = load_weights<D>(rows[r], v, p);
#pragma unroll
      for (int piece = 0; piece < F::kElems / F::kPiece; ++piece) {
        float w[R][F::kPiece];
#pragma unroll
        for (int r = 0; r < R; ++r) decode_weights<D>(raw[r], piece, w[r]);
        const uint32_t e = v * F::kElems + piece * F::kPiece;
#pragma unroll
        for (int t = 0; t < T; ++t) {
          float a[F::kPiece];
          load_acts<D>(act0 + t * act_row_bytes, e, a);
#pragma unroll
          for (int r = 0; r < R; ++r) {
#pragma unroll
            for (int j = 0; j < F::kPiece; ++j) acc[r][t] = fmaf(w[r][j], a[j], acc[r][t]);
          }
        }
      }
    }
  }
  if constexpr (D == DType::F32 || D == DType::F16 || D == DType::BF16) {
    // Rows that are not 16-byte multiples (or not aligned): the rest element by element.
    for (uint32_t e = p.nvec * F::kElems + lane; e < p.cols; e += 32) {
      float w[R];
#pragma unroll
      for (int r = 0; r < R; ++r) w[r] = plain_weight<D>(rows[r], e);
#pragma unroll
      for (int t = 0; t < T; ++t) {
        const float a = reinterpret_cast<const float*>(act0 + t * act_row_bytes)[e];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][t] = fmaf(w[r], a, acc[r][t]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int t = 0; t < T; ++t) {
      Acc s;
      if constexpr (kInt) {
        s = warp_sum_int(acc[r][t]);
      } else {
        s = warp_sum(acc[r][t]);
      }
      // Every lane holds the sum; spread the stores over the lanes.
      if (lane == (r * T + t) % 32 && r0 + r < p.rows) {
        float out = static_cast<float>(s);
        if constexpr (D == DType::W8A8 || D == DType::FP8 || D == DType::W4A8) {
          out *= f32_at(rows[r]) * p.token_scale[tok0 + t];  // as the CPU: dot * (row scale * token scale)
        }
        if (p.bias != nullptr) out += p.bias[r0 + r];
        p.y[static_cast<uint64_t>(tok0 + t) * p.rows + r0 + r] = out;
      }
    }
  }
}

}  // namespace fineserve::gpu::linear_detail
