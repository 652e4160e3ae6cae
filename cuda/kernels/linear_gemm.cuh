// The prefill path of linear(): a tensor-core GEMM, y[tokens][rows] = A[tokens][k] W[rows][k]^T,
// which is mma's row.col shape as the tensors lie (A = activations, B = weight rows). One CTA of 4
// warps computes a 64 x 64 tile (64 tokens x 64 output rows), each warp 32 x 32 (2 x 4 mma tiles);
// k advances 64 bytes at a time: 32 elements of f16/bf16 (two m16n8k16) or 64 of int8 (two
// m16n8k32). Both operand tiles sit k-contiguous in shared memory, rows padded to 80 bytes so the
// fragment loads (8 rows x 4 words per instruction) hit 32 different banks.
//
// Weights are dequantized while being copied to shared memory, exactly where possible, so one
// kernel serves every format: F16/BF16 as stored; FP8 e4m3 -> f16 (x 2^-8, exact); W4A8 nibbles
// -> (n - 8) * group scale in f16 (exact); W4A16 -> n * scale + min rounded to f16; W8A8 int8 as
// stored, into the s8 mma (int32 sums, exact). The activations arrive prepared in scratch in the
// matching form (linear.cu). The next k tile is loaded into registers while the current one is
// multiplied (plain loads; linear_gemm_v2.cuh is the larger-tile, cp.async + ldmatrix version that
// linear() prefers from kGemmV2MinTokens tokens; this one serves fewer tokens and FINESERVE_GEMM=v1).
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/cuda_lang.cuh"
#include "common/mma.cuh"
#include "common/numeric.cuh"
#include "kernels/linear_common.cuh"
#include "model/tensor.h"

namespace fineserve::gpu::linear_detail {

// One tensor-core product in the MMA the weight type's tiles are converted for: s8 for W8A8, bf16
// for BF16, f16 for every other type; acc += a * b.
template <model::DType D, class Acc>
__device__ __forceinline__ void mma_for(Acc (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (D == model::DType::W8A8) {
    mma_m16n8k32_s8(acc, a, b, acc);
  } else if constexpr (D == model::DType::BF16) {
    mma_m16n8k16_bf16(acc, a, b, acc);
  } else {
    mma_m16n8k16_f16(acc, a, b, acc);
  }
}

inline constexpr int kGemmM = 64, kGemmN = 64, kGemmKBytes = 64;
inline constexpr int kGemmThreads = 128;
inline constexpr int kSmemRowWords = (kGemmKBytes + 16) / 4;  // 20 words: conflict-free fragment loads

struct GemmParams {
  const uint8_t* w = nullptr;
  uint64_t row_bytes = 0;
  uint32_t data_offset = 0;
  uint32_t rows = 0, cols = 0, group = 0;
  bool vec_ok = false;  // F16/BF16: rows 16-byte aligned, so whole 8-element chunks are loaded at once
  const uint8_t* act = nullptr;
  uint32_t act_row_bytes = 0;  // a multiple of kGemmKBytes
  uint32_t tokens = 0;
  const float* token_scale = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
  bool y_pairs = false;  // rows even and y 8-byte aligned: the v2 epilogue stores (n, n + 1) as one float2
};

using model::DType;

__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  return static_cast<uint32_t>(f32_to_f16(lo)) | static_cast<uint32_t>(f32_to_f16(hi)) << 16;
}

// Chunk c (16 bytes of the smem row) of weight row n's k tile kt, in two halves so that a kernel
// can issue the loads long before it needs the values (linear_gemm_v2.cuh): load_weight_raw reads
// what the chunk needs (zeros when it lies outside the matrix, which convert_weight_chunk maps to
// zeros), convert_weight_chunk makes of it what the mma reads.
struct RawChunk {
  Vec16 v{0, 0, 0, 0};  // F16/BF16/W8A8: the chunk itself; FP8 / W4: x, y = its 8 stored bytes
  uint32_t s = 0;       // W4A16: f16 scale | f16 min << 16; W4A8: the group's e4m3 scale byte
};

template <DType D>
__device__ __forceinline__ RawChunk load_weight_raw(const GemmParams& p, uint32_t n, uint32_t kt, int c) {
  RawChunk out;
  if (n >= p.rows) return out;
  const uint8_t* row = p.w + static_cast<uint64_t>(n) * p.row_bytes;
  if constexpr (D == DType::F16 || D == DType::BF16) {
    const uint32_t k = kt * 32 + c * 8;
    if (k >= p.cols) return out;
    if (p.vec_ok) {
      out.v = load16_stream(row + 2ull * k);
      return out;
    }
    uint32_t h[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) h[j] = k + j < p.cols ? scalar_at<uint16_t>(row + 2ull * (k + j)) : 0u;
    out.v = Vec16{h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16};
  } else if constexpr (D == DType::W8A8) {
    const uint32_t k = kt * 64 + c * 16;
    if (k < p.cols) out.v = load16_stream(row + p.data_offset + k);  // the row's zero padding covers k + 15
  } else if constexpr (D == DType::FP8) {
    const uint32_t k = kt * 32 + c * 8;
    if (k >= p.cols) return out;
    const uint8_t* q = row + p.data_offset + k;
    out.v.x = scalar_at<uint32_t>(q);
    out.v.y = scalar_at<uint32_t>(q + 4);
  } else {  // W4A16, W4A8: sub-block kt, elements 8c .. 8c + 7
    if (32 * kt >= p.cols) return out;
    const uint32_t g = 32 * kt / p.group;
    if constexpr (D == DType::W4A16) {
      out.s = scalar_at<uint16_t>(row + 4 * g) | static_cast<uint32_t>(scalar_at<uint16_t>(row + 4 * g + 2)) << 16;
    } else {
      out.s = row[4 + g];
    }
    const uint8_t* sub = row + p.data_offset + 16ull * kt + (c & 1) * 8;
    out.v.x = scalar_at<uint32_t>(sub);
    out.v.y = scalar_at<uint32_t>(sub + 4);
  }
  return out;
}

template <DType D>
__device__ __forceinline__ Vec16 convert_weight_chunk(const RawChunk& r, int c) {
  if constexpr (D == DType::F16 || D == DType::BF16 || D == DType::W8A8) {
    return r.v;
  } else if constexpr (D == DType::FP8) {
    return Vec16{e4m3x2_to_f16x2_over256(r.v.x & 0xFFFFu), e4m3x2_to_f16x2_over256(r.v.x >> 16),
                 e4m3x2_to_f16x2_over256(r.v.y & 0xFFFFu), e4m3x2_to_f16x2_over256(r.v.y >> 16)};
  } else {
    float scale, offset;
    if constexpr (D == DType::W4A16) {
      scale = f16_to_f32(static_cast<uint16_t>(r.s & 0xFFFFu));
      offset = f16_to_f32(static_cast<uint16_t>(r.s >> 16));
    } else {
      scale = e4m3_to_f32(r.s);
      offset = -8.0f * scale;
    }
    uint32_t h[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      // nibble_of reads words (c & 1) * 2 + j / 4 of a whole sub-block; here only those two are loaded.
      const float w0 = fmaf(static_cast<float>(nibble_of(r.v, c & 2, 2 * q)), scale, offset);
      const float w1 = fmaf(static_cast<float>(nibble_of(r.v, c & 2, 2 * q + 1)), scale, offset);
      h[q] = pack_f16x2(w0, w1);
    }
    return Vec16{h[0], h[1], h[2], h[3]};
  }
}

template <DType D>
__device__ __forceinline__ Vec16 load_weight_chunk(const GemmParams& p, uint32_t n, uint32_t kt, int c) {
  return convert_weight_chunk<D>(load_weight_raw<D>(p, n, kt, c), c);
}

template <DType D>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(GemmParams p) {
  constexpr bool kInt = D == DType::W8A8;
  using Acc = typename std::conditional<kInt, int32_t, float>::type;
  // 16-byte aligned for the vector stores (a struct, as both compilers accept its alignas).
  struct alignas(16) Tiles {
    uint32_t a[kGemmM * kSmemRowWords], b[kGemmN * kSmemRowWords];
  };
  __shared__ Tiles tiles;
  uint32_t* a_tile = tiles.a;
  uint32_t* b_tile = tiles.b;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane >> 2, t = lane & 3;
  const int warp_m = warp / 2, warp_n = warp % 2;
  const uint32_t m0 = blockIdx.y * kGemmM, n0 = blockIdx.x * kGemmN;
  const uint32_t ktiles = p.act_row_bytes / kGemmKBytes;

  // Each thread copies two 16-byte chunks of each operand tile per k step.
  Vec16 a_next[2], b_next[2];
  auto load_tiles = [&](uint32_t kt) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + i * kGemmThreads, row = idx / 4, c = idx % 4;
      const uint32_t m = m0 + row;
      a_next[i] = m < p.tokens ? load16(p.act + static_cast<uint64_t>(m) * p.act_row_bytes + kt * kGemmKBytes + c * 16)
                               : Vec16{0, 0, 0, 0};
      b_next[i] = load_weight_chunk<D>(p, n0 + row, kt, c);
    }
  };
  auto store_tiles = [&] {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + i * kGemmThreads, row = idx / 4, c = idx % 4;
      *reinterpret_cast<Vec16*>(&a_tile[row * kSmemRowWords + c * 4]) = a_next[i];
      *reinterpret_cast<Vec16*>(&b_tile[row * kSmemRowWords + c * 4]) = b_next[i];
    }
  };

  Acc acc[2][4][4] = {};
  load_tiles(0);
  store_tiles();
  __syncthreads();
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    if (kt + 1 < ktiles) load_tiles(kt + 1);
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const uint32_t* base = &a_tile[(warp_m * 32 + mi * 16 + g) * kSmemRowWords + ks * 8 + t];
        a[mi][0] = base[0];
        a[mi][1] = base[8 * kSmemRowWords];
        a[mi][2] = base[4];
        a[mi][3] = base[8 * kSmemRowWords + 4];
      }
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const uint32_t* base = &b_tile[(warp_n * 32 + ni * 8 + g) * kSmemRowWords + ks * 8 + t];
        b[ni][0] = base[0];
        b[ni][1] = base[4];
      }
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          mma_for<D>(acc[mi][ni], a[mi], b[ni]);
        }
      }
    }
    __syncthreads();
    if (kt + 1 < ktiles) {
      store_tiles();
      __syncthreads();
    }
  }

  // Epilogue: c0, c1 at (token g, rows 2t, 2t + 1), c2, c3 eight tokens further.
#pragma unroll
  for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const uint32_t n = n0 + warp_n * 32 + ni * 8 + 2 * t + j;
      if (n >= p.rows) continue;
      float row_scale = 1.0f;
      if constexpr (D == DType::W8A8 || D == DType::FP8 || D == DType::W4A8) row_scale = f32_at(p.w + n * p.row_bytes);
      const float bias = p.bias != nullptr ? p.bias[n] : 0.0f;
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint32_t m = m0 + warp_m * 32 + mi * 16 + g + 8 * h;
          if (m >= p.tokens) continue;
          float out = static_cast<float>(acc[mi][ni][2 * h + j]);
          if constexpr (D == DType::FP8) out *= 256.0f;  // the weights went in as e4m3 x 2^-8
          if constexpr (D == DType::W8A8 || D == DType::FP8 || D == DType::W4A8) out *= row_scale * p.token_scale[m];
          p.y[static_cast<uint64_t>(m) * p.rows + n] = out + bias;
        }
      }
    }
  }
}

}  // namespace fineserve::gpu::linear_detail
