// The small per-row and per-element kernels of a forward step (kernels.h). Each mirrors one CPU
// function of cpp/core and rounds the way it does, so the two backends agree to the last bit
// wherever the order of a reduction does not enter (see the notes per kernel).
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "common/numeric.cuh"
#include "kernels/kernels.h"

namespace fineserve::gpu {

namespace {

constexpr unsigned kRowThreads = 256;  // one block per row: enough lanes to stream a 4k-8k row

// Products and sums nvcc must not fuse into an FMA: the CPU build (plain x86-64) rounds each one,
// and rope's outputs feed the KV cache, whose bytes are compared with the CPU's.
__device__ __forceinline__ float mul_rn(float a, float b) {
#if FS_SIMT
  return a * b;
#else
  return __fmul_rn(a, b);
#endif
}
__device__ __forceinline__ float add_rn(float a, float b) {
#if FS_SIMT
  return a + b;
#else
  return __fadd_rn(a, b);
#endif
}
__device__ __forceinline__ float sub_rn(float a, float b) {
#if FS_SIMT
  return a - b;
#else
  return __fsub_rn(a, b);
#endif
}

// Sum of one double per thread over a block of kRowThreads; every thread gets the total.
__device__ double block_sum_double(double v) {
  __shared__ double partial[kRowThreads / 32];
  __shared__ double total;
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0;
    for (unsigned w = 0; w < kRowThreads / 32; ++w) s += partial[w];
    total = s;
  }
  __syncthreads();
  return total;
}

__global__ void __launch_bounds__(kRowThreads)
    embed_kernel(const int32_t* tokens, const uint8_t* table, model::DType dtype, uint32_t vocab, uint32_t dim,
                 uint64_t row_bytes, float* out) {
  const int32_t t = tokens[blockIdx.x];
  float* o = out + static_cast<size_t>(blockIdx.x) * dim;
  if (t < 0 || static_cast<uint32_t>(t) >= vocab) {
    // The host cannot see device token ids; a NaN row makes a bad id visible downstream.
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = __int_as_float(0x7FC00000);
    return;
  }
  const uint8_t* row = table + static_cast<uint64_t>(t) * row_bytes;
  for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) {
    switch (dtype) {
      case model::DType::F16: o[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]); break;
      case model::DType::BF16: o[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]); break;
      default: o[i] = reinterpret_cast<const float*>(row)[i]; break;
    }
  }
}

__global__ void __launch_bounds__(kRowThreads)
    rms_norm_kernel(const float* x, uint32_t dim, const float* weight, float eps, float* out) {
  const float* xr = x + static_cast<size_t>(blockIdx.x) * dim;
  float* o = out + static_cast<size_t>(blockIdx.x) * dim;
  // Squares of floats are exact in double, so only the order of the additions differs from the
  // CPU's sequential sum (a last-bit difference of the scale at most, and rarely).
  double ss = 0;
  for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) ss += static_cast<double>(xr[i]) * xr[i];
  ss = block_sum_double(ss);
  const float scale = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(dim) + eps));
  // In place is safe: each thread rewrites only the elements it read itself.
  for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = mul_rn(mul_rn(xr[i], scale), weight[i]);
}

// One block per row; thread i owns pair i of every head, so each angle's cos/sin (in double, as
// the CPU computes them) is evaluated once per row.
__global__ void rope_kernel(float* x, uint32_t heads, uint32_t head_dim, const uint32_t* positions,
                            const double* inv_freq, bool interleaved) {
  const uint32_t half = head_dim / 2, pos = positions[blockIdx.x];
  float* row = x + static_cast<size_t>(blockIdx.x) * heads * head_dim;
  for (uint32_t i = threadIdx.x; i < half; i += blockDim.x) {
    const double angle = pos * inv_freq[i];
    const float c = static_cast<float>(cos(angle)), s = static_cast<float>(sin(angle));
    const uint32_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    for (uint32_t h = 0; h < heads; ++h) {
      float* v = row + static_cast<size_t>(h) * head_dim;
      const float x0 = v[a], x1 = v[b];
      v[a] = sub_rn(mul_rn(x0, c), mul_rn(x1, s));
      v[b] = add_rn(mul_rn(x0, s), mul_rn(x1, c));
    }
  }
}

__global__ void silu_mul_kernel(float* gate, const float* up, size_t n) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    // expf, not __expf: the CPU uses the accurate one, and this is not a bottleneck.
    gate[i] = mul_rn(g / add_rn(1.0f, expf(-g)), up[i]);
  }
}

__global__ void add_kernel(float* x, const float* y, size_t n) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    x[i] += y[i];
  }
}

__global__ void gather_kernel(const float* x, const uint32_t* rows, uint32_t dim, float* out) {
  const float* src = x + static_cast<size_t>(rows[blockIdx.x]) * dim;
  float* dst = out + static_cast<size_t>(blockIdx.x) * dim;
  for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

// (value, index) with index -1 for "nothing yet": NaN is skipped, so a row of NaN gives -1, and
// -inf can still win a row that has nothing larger.
struct Best {
  float v;
  int32_t i;
};
__device__ __forceinline__ Best better(Best a, Best b) {
  if (b.i < 0) return a;
  if (a.i < 0) return b;
  if (b.v > a.v || (b.v == a.v && b.i < a.i)) return b;
  return a;
}

__global__ void __launch_bounds__(kRowThreads) argmax_kernel(const float* logits, uint32_t vocab, int32_t* out) {
  __shared__ Best partial[kRowThreads / 32];
  const float* row = logits + static_cast<size_t>(blockIdx.x) * vocab;
  Best best{0.0f, -1};
  for (uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = row[i];
    if (v == v) best = better(best, Best{v, static_cast<int32_t>(i)});
  }
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) {
    Best o{__shfl_xor_sync(0xffffffffu, best.v, m), __shfl_xor_sync(0xffffffffu, best.i, m)};
    best = better(best, o);
  }
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    Best b = partial[0];
    for (unsigned w = 1; w < kRowThreads / 32; ++w) b = better(b, partial[w]);
    out[blockIdx.x] = b.i;
  }
}

unsigned flat_blocks(size_t n, unsigned threads) {
  const size_t want = (n + threads - 1) / threads;
  return static_cast<unsigned>(want < 4096 ? want : 4096);  // grid-stride beyond: plenty to fill a GPU
}

}  // namespace

void embed(const int32_t* tokens, uint32_t n, const DeviceMatrix& table, float* out, Stream stream) {
  if (table.dtype != model::DType::F32 && table.dtype != model::DType::F16 && table.dtype != model::DType::BF16) {
    throw std::invalid_argument(std::string("embed: table dtype ") + model::dtype_name(table.dtype) +
                                " (F32, F16 or BF16 only)");
  }
  if (n == 0) return;
  launch("embed", embed_kernel, dim3(n), dim3(kRowThreads), 0, stream, tokens, table.data, table.dtype, table.rows,
         table.cols, table.row_bytes, out);
}

void rms_norm(const float* x, uint32_t rows, uint32_t dim, const float* weight, float eps, float* out, Stream stream) {
  if (rows == 0) return;
  launch("rms_norm", rms_norm_kernel, dim3(rows), dim3(kRowThreads), 0, stream, x, dim, weight, eps, out);
}

void rope(float* x, uint32_t rows, uint32_t heads, uint32_t head_dim, const uint32_t* positions,
          const double* inv_freq, bool interleaved, Stream stream) {
  if (head_dim % 2 != 0) throw std::invalid_argument("rope: head_dim = " + std::to_string(head_dim) + " is odd");
  if (rows == 0 || head_dim == 0) return;
  const unsigned half = head_dim / 2, threads = half < 128 ? (half + 31) / 32 * 32 : 128;
  launch("rope", rope_kernel, dim3(rows), dim3(threads), 0, stream, x, heads, head_dim, positions, inv_freq,
         interleaved);
}

void silu_mul(float* gate, const float* up, size_t n, Stream stream) {
  if (n == 0) return;
  launch("silu_mul", silu_mul_kernel, dim3(flat_blocks(n, 256)), dim3(256), 0, stream, gate, up, n);
}

void add_inplace(float* x, const float* y, size_t n, Stream stream) {
  if (n == 0) return;
  launch("add_inplace", add_kernel, dim3(flat_blocks(n, 256)), dim3(256), 0, stream, x, y, n);
}

void gather_rows(const float* x, const uint32_t* rows, uint32_t n, uint32_t dim, float* out, Stream stream) {
  if (n == 0) return;
  launch("gather_rows", gather_kernel, dim3(n), dim3(kRowThreads), 0, stream, x, rows, dim, out);
}

void argmax(const float* logits, uint32_t rows, uint32_t vocab, int32_t* out, Stream stream) {
  if (rows == 0) return;
  launch("argmax", argmax_kernel, dim3(rows), dim3(kRowThreads), 0, stream, logits, vocab, out);
}

}  // namespace fineserve::gpu
