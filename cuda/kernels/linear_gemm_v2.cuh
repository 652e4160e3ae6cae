// The prefill GEMM, version 2: the same product and weight conversions as linear_gemm.cuh (v1),
// with the three things v1 leaves on the table.
//
// 1. A 128 x 128 CTA tile (128 tokens x 128 output rows), 8 warps of 64 x 32 (4 x 4 mma tiles).
//    Per k step a CTA brings 256 rows of 64 bytes into shared memory for 128 x 128 products, twice
//    v1's products per byte moved, and a warp issues 6 ldmatrix.x4 per 16 mma (v1: 16 32-bit loads
//    per 8). 128 x 128 rather than 128 x 64: at prefill sizes (>= 512 tokens, >= 2048 rows) there
//    are still >= 64 CTAs to spread over the SMs, the accumulators (64 per thread) leave room
//    for 2 CTAs of 256 threads per SM (launch bounds below), and the weight stream, which a
//    quantized format must also convert, is shared by twice the tokens.
// 2. A 3-stage shared-memory pipeline: the activation tiles (already f16/bf16/s8 in scratch) and
//    the weights that are read as stored (F16/BF16 with 16-byte aligned rows, W8A8) go through
//    cp.async straight into shared memory, two k steps ahead of the MMAs, one barrier per k step.
//    Weights that need a conversion (FP8, W4A16, W4A8, unaligned F16/BF16) are loaded raw into
//    registers two steps ahead as well, converted after the current step's MMAs and stored to
//    the free stage, so their global latency is hidden behind a whole k step of MMAs too.
// 3. ldmatrix fragment loads from 64-byte rows (k step = 64 bytes: 32 f16/bf16, 64 int8) with the
//    16-byte chunks XOR-swizzled by (row / 2) % 4: the 8 rows one ldmatrix phase reads (same
//    logical chunk, rows 8i .. 8i + 7) then fall in 8 distinct 16-byte bank groups, as do the 8
//    chunks (2 rows x 4) each phase of the 16-byte tile stores writes. No padding, so a stage is
//    exactly (128 + 128) x 64 = 16 KiB and the three 48 KiB: within the default dynamic shared
//    memory limit, 2 CTAs per SM on A100 and H100 alike.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/async_copy.cuh"
#include "common/cuda_lang.cuh"
#include "common/ldmatrix.cuh"
#include "common/mma.cuh"
#include "kernels/linear_gemm.cuh"

namespace fineserve::gpu::linear_detail {

inline constexpr int kGemm2M = 128, kGemm2N = 128, kGemm2KBytes = 64, kGemm2Stages = 3;
inline constexpr int kGemm2Threads = 256;
inline constexpr uint32_t kGemm2StageBytes = (kGemm2M + kGemm2N) * kGemm2KBytes;
inline constexpr uint32_t kGemm2SmemBytes = kGemm2Stages * kGemm2StageBytes;
static_assert(kGemm2KBytes == kGemmKBytes, "v2 reads the activation rows and weight chunks as v1 lays them out");

// Byte offset of 16-byte chunk c of tile row `row` (rows of 64 bytes).
__device__ __forceinline__ uint32_t swizzled(int row, int c) {
  return static_cast<uint32_t>(row * kGemm2KBytes + ((c ^ ((row >> 1) & 3)) << 4));
}

// Weights that can go to shared memory as stored, by cp.async.
template <DType D>
__host__ __device__ constexpr bool direct_weights(bool vec_ok) {
  return D == DType::W8A8 || ((D == DType::F16 || D == DType::BF16) && vec_ok);
}

template <DType D, bool kDirect>
__global__ void __launch_bounds__(kGemm2Threads, 2) gemm_v2_kernel(GemmParams p) {
  constexpr bool kInt = D == DType::W8A8;
  constexpr int kChunks = kGemm2M * kGemm2KBytes / 16 / kGemm2Threads;  // per thread and operand: 2
  static_assert(kGemm2M == kGemm2N, "one chunk mapping serves both operand tiles");
  using Acc = typename std::conditional<kInt, int32_t, float>::type;
  FS_DYNAMIC_SMEM(uint8_t, smem);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane >> 2, t = lane & 3;
  const int warp_m = warp / 4, warp_n = warp % 4;
  const uint32_t m0 = blockIdx.y * kGemm2M, n0 = blockIdx.x * kGemm2N;
  const uint32_t ktiles = p.act_row_bytes / kGemm2KBytes;

  auto a_tile = [&](int stage) { return smem + stage * kGemm2StageBytes; };
  auto b_tile = [&](int stage) { return smem + stage * kGemm2StageBytes + kGemm2M * kGemm2KBytes; };

  // Thread tid copies chunks tid and tid + 256 of each tile: 4 chunks a row, so 8 consecutive
  // threads cover 2 whole rows.
  auto copy_async = [&](uint32_t kt, int stage) {
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int idx = tid + i * kGemm2Threads, row = idx / 4, c = idx % 4;
      const uint32_t m = m0 + row;
      const bool a_in = m < p.tokens;
      const uint8_t* a_src = p.act + (a_in ? static_cast<uint64_t>(m) * p.act_row_bytes + kt * kGemm2KBytes + c * 16 : 0);
      cp_async16(a_tile(stage) + swizzled(row, c), a_src, a_in ? 16 : 0);
      if constexpr (kDirect) {
        const uint32_t n = n0 + row;
        // Element k of the row (bytes for W8A8): in range chunk by chunk, as the rows are whole
        // 16-byte vectors (F16/BF16 vec_ok; W8A8's data is zero padded to them).
        const uint32_t k = kInt ? kt * 64 + c * 16 : kt * 32 + c * 8;
        const bool b_in = n < p.rows && k < p.cols;
        const uint8_t* b_src =
            p.w + (b_in ? static_cast<uint64_t>(n) * p.row_bytes + p.data_offset + (kInt ? k : 2ull * k) : 0);
        cp_async16(b_tile(stage) + swizzled(row, c), b_src, b_in ? 16 : 0);
      }
    }
  };
  RawChunk raw[kChunks];
  auto load_raw = [&](uint32_t kt) {
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int idx = tid + i * kGemm2Threads;
      raw[i] = load_weight_raw<D>(p, n0 + idx / 4, kt, idx % 4);
    }
  };
  auto store_converted = [&](int stage) {
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int idx = tid + i * kGemm2Threads, row = idx / 4, c = idx % 4;
      *reinterpret_cast<Vec16*>(b_tile(stage) + swizzled(row, c)) = convert_weight_chunk<D>(raw[i], c);
    }
  };

  Acc acc[4][4][4] = {};
  auto multiply = [&](int stage) {
    const uint8_t* at = a_tile(stage);
    const uint8_t* bt = b_tile(stage);
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      // A (m16 x k16, or k32 of int8): matrices rows 0-7 / 8-15 x chunk 2ks / 2ks + 1, in a0..a3
      // order. B: two n8 tiles per x4, each rows x chunks 2ks, 2ks + 1 (b0, b1).
      uint32_t a[4][4], b[4][2];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        const int row = warp_m * 64 + mi * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
        ldmatrix_m8n8<4>(a[mi], at + swizzled(row, 2 * ks + (lane >> 4)));
      }
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        const int row = warp_n * 32 + np * 16 + (lane & 7) + 8 * (lane >> 4);
        uint32_t r[4];
        ldmatrix_m8n8<4>(r, bt + swizzled(row, 2 * ks + ((lane >> 3) & 1)));
        b[2 * np][0] = r[0];
        b[2 * np][1] = r[1];
        b[2 * np + 1][0] = r[2];
        b[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          mma_for<D>(acc[mi][ni], a[mi], b[ni]);
        }
      }
    }
  };

  // Prologue: stages 0 .. S-2 in flight, one commit group each (empty past the last k tile, so
  // that wait_group's count means the same in every iteration).
#pragma unroll
  for (int s = 0; s < kGemm2Stages - 1; ++s) {
    if (static_cast<uint32_t>(s) < ktiles) {
      copy_async(s, s);
      if constexpr (!kDirect) {
        load_raw(s);
        store_converted(s);
      }
    }
    cp_async_commit();
  }

  int read_stage = 0, write_stage = kGemm2Stages - 1;
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<kGemm2Stages - 2>();  // this thread's copies of tile kt have landed
    // Everyone's copies of tile kt are visible, and everyone is done reading tile kt - 1, whose
    // stage (write_stage) is refilled next.
    __syncthreads();
    const uint32_t next = kt + kGemm2Stages - 1;
    const bool more = next < ktiles;
    if (more) {
      copy_async(next, write_stage);
      if constexpr (!kDirect) load_raw(next);
    }
    cp_async_commit();
    multiply(read_stage);
    // Nobody reads write_stage in this iteration; the barrier of a later one publishes it.
    if constexpr (!kDirect) {
      if (more) store_converted(write_stage);
    }
    read_stage = read_stage == kGemm2Stages - 1 ? 0 : read_stage + 1;
    write_stage = write_stage == kGemm2Stages - 1 ? 0 : write_stage + 1;
  }

  // Epilogue: c0, c1 at (token g, rows 2t, 2t + 1), c2, c3 eight tokens further.
  struct alignas(8) Pair {
    float lo, hi;
  };
#pragma unroll
  for (int ni = 0; ni < 4; ++ni) {
    const uint32_t n = n0 + warp_n * 32 + ni * 8 + 2 * t;
    if (n >= p.rows) continue;
    const bool two = n + 1 < p.rows;
    float row_scale[2] = {1.0f, 1.0f}, bias[2] = {0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (j == 1 && !two) break;
      if constexpr (D == DType::W8A8 || D == DType::FP8 || D == DType::W4A8) {
        row_scale[j] = f32_at(p.w + (n + j) * p.row_bytes);
        if constexpr (D == DType::FP8) row_scale[j] *= 256.0f;  // the weights went in as e4m3 x 2^-8
      }
      if (p.bias != nullptr) bias[j] = p.bias[n + j];
    }
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t m = m0 + warp_m * 64 + mi * 16 + g + 8 * h;
        if (m >= p.tokens) continue;
        float out[2];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          out[j] = static_cast<float>(acc[mi][ni][2 * h + j]);
          if constexpr (D == DType::W8A8 || D == DType::FP8 || D == DType::W4A8) {
            out[j] *= row_scale[j] * p.token_scale[m];
          }
          out[j] += bias[j];
        }
        float* dst = p.y + static_cast<uint64_t>(m) * p.rows + n;
        if (two && p.y_pairs) {
          *reinterpret_cast<Pair*>(dst) = Pair{out[0], out[1]};
        } else {
          dst[0] = out[0];
          if (two) dst[1] = out[1];
        }
      }
    }
  }
}

}  // namespace fineserve::gpu::linear_detail
