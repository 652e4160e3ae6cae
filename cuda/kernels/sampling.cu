// Greedy sampling on the device (kernels.h): one block per row, two passes over the row's logits
// (the argmax with its value, then the sum of exponentials for the log-probability).
#include <cfloat>

#include "common/cuda_lang.cuh"
#include "common/launch.cuh"
#include "common/numeric.cuh"
#include "kernels/kernels.h"

namespace fineserve::gpu {

namespace {

constexpr int kThreads = 256;

// The better of two (value, index) candidates: larger value, then lower index.
__device__ __forceinline__ void better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi >= 0 && (i < 0 || oi < i))) {
    v = ov;
    i = oi;
  }
}

__global__ void __launch_bounds__(kThreads) greedy_kernel(const float* logits, uint32_t vocab, int32_t* token,
                                                          float* logprob) {
  const float* row = logits + static_cast<size_t>(blockIdx.x) * vocab;
  __shared__ float s_val[kThreads / 32];
  __shared__ int s_idx[kThreads / 32];
  __shared__ double s_sum[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  float best = -INFINITY;
  int at = -1;
  for (uint32_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float x = row[i];
    if (x > best) {  // NaN compares false: never taken; ascending i keeps the first of equals
      best = x;
      at = static_cast<int>(i);
    }
  }
  for (int m = 16; m > 0; m >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, m);
    const int oi = __shfl_xor_sync(0xffffffffu, at, m);
    better(best, at, ov, oi);
  }
  if (lane == 0) {
    s_val[warp] = best;
    s_idx[warp] = at;
  }
  __syncthreads();
  best = s_val[0];
  at = s_idx[0];
  for (int w = 1; w < kThreads / 32; ++w) better(best, at, s_val[w], s_idx[w]);

  // With a +inf maximum the host sampler gives each +inf entry an equal share: count them.
  double sum = 0;
  if (at >= 0) {
    for (uint32_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float x = row[i];
      if (best == INFINITY) {
        sum += x == INFINITY ? 1.0 : 0.0;
      } else if (x == x) {
        sum += static_cast<double>(expf(x - best));
      }
    }
  }
  for (int m = 16; m > 0; m >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);
  if (lane == 0) s_sum[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += s_sum[w];
    token[blockIdx.x] = at;
    logprob[blockIdx.x] = at < 0 ? -INFINITY : static_cast<float>(-::log(total));
  }
}

}  // namespace

void greedy_sample(const float* logits, uint32_t rows, uint32_t vocab, int32_t* token, float* logprob, Stream stream) {
  if (rows == 0) return;
  launch("greedy_sample", greedy_kernel, dim3(rows), dim3(kThreads), 0, stream, logits, vocab, token, logprob);
}

}  // namespace fineserve::gpu
