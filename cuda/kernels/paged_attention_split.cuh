// Split-K ("flash-decoding") for the row path of paged_attention. A decode batch of a few rows is
// only rows x kv_heads CTAs (8 on a GPU of 132 SMs for one Llama-8B sequence), so a long context
// would be read by a handful of SMs. Then each row's context is cut into `splits` ranges, one CTA
// each, which leave their unnormalised state (maximum, sum of weights, weighted sum of V) per query
// head in the scratch buffer, and merge_kernel combines them.
#pragma once

#include "common/launch.cuh"
#include "kernels/paged_attention_decode.cuh"

namespace fineserve::gpu {

namespace {

// Under the emulator every CTA runs on one CPU thread, so more splits only cost time; the policy
// is the same with smaller numbers, so contexts of a few hundred tokens still take the split path.
#if FS_SIMT
constexpr uint32_t kTargetCtas = 32, kMinSplitSpan = 64, kMaxSplits = 8;
#else
constexpr uint32_t kTargetCtas = 2 * 132, kMinSplitSpan = 256, kMaxSplits = 32;
#endif
// Split ranges are whole steps of every head dim's CTA (4 warps x 32 / (D / 8) positions).
constexpr uint32_t kSplitAlign = 32;

// How many CTAs share one row's context: enough to fill the GPU, each with at least
// kMinSplitSpan positions of the longest context.
inline uint32_t split_count(uint32_t rows, uint32_t kv_ctas, uint32_t max_context) {
  const uint64_t ctas = uint64_t{rows} * kv_ctas;
  if (ctas == 0 || ctas >= kTargetCtas) return 1;
  uint32_t s = static_cast<uint32_t>((kTargetCtas + ctas - 1) / ctas);
  const uint32_t by_len = (max_context + kMinSplitSpan - 1) / kMinSplitSpan;
  if (s > by_len) s = by_len;
  if (s > kMaxSplits) s = kMaxSplits;
  return s < 1 ? 1 : s;
}

// Positions [begin, end) of a context of ctx for split `s` of `splits`.
__device__ __forceinline__ void split_range(uint32_t ctx, uint32_t s, uint32_t splits, uint32_t& begin, uint32_t& end) {
  const uint32_t per = ((ctx + splits - 1) / splits + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
  begin = s * per < ctx ? s * per : ctx;
  end = begin + per < ctx ? begin + per : ctx;
}

// Where split CTAs leave their state: for partial index (slot * heads + head) * splits + split,
// ml holds (maximum, sum) and acc D floats. A split that saw no position leaves (-inf, 0, 0...).
struct Partials {
  float* ml = nullptr;
  float* acc = nullptr;
  uint32_t splits = 1;
};

inline size_t partial_floats(uint64_t partials, uint32_t head_dim) { return partials * (2 + head_dim); }

inline Partials partials_in(void* scratch, uint64_t partials, uint32_t splits) {
  Partials p;
  p.ml = static_cast<float*>(scratch);
  p.acc = p.ml + 2 * partials;
  p.splits = splits;
  return p;
}

constexpr uint32_t kMergeThreads = 128;

// out[row][h][d] for the (slot, h, d) of this thread: the splits' states rescaled to their common
// maximum, as the row kernel merges its lane groups.
__global__ void __launch_bounds__(kMergeThreads)
    merge_kernel(const uint32_t* rows, uint32_t heads, uint32_t head_dim, Partials part, float* out) {
  const uint32_t slot = blockIdx.x, e = blockIdx.y * kMergeThreads + threadIdx.x;
  if (e >= heads * head_dim) return;
  const uint32_t h = e / head_dim, d = e % head_dim, n = part.splits;
  const uint64_t first = (uint64_t{slot} * heads + h) * n;
  float mx = -INFINITY;
  for (uint32_t s = 0; s < n; ++s) mx = fmaxf(mx, part.ml[2 * (first + s)]);
  float sum = 0, o = 0;
  for (uint32_t s = 0; s < n; ++s) {
    const float w = weight(part.ml[2 * (first + s)], mx);
    sum += part.ml[2 * (first + s) + 1] * w;
    o += part.acc[(first + s) * head_dim + d] * w;
  }
  const uint32_t row = rows ? rows[slot] : slot;
  out[(static_cast<size_t>(row) * heads + h) * head_dim + d] = o / sum;
}

inline void launch_merge(const uint32_t* rows, uint32_t n_rows, uint32_t heads, uint32_t head_dim, Partials part,
                         float* out, Stream stream) {
  const dim3 grid(n_rows, (heads * head_dim + kMergeThreads - 1) / kMergeThreads);
  launch("paged_attention (merge splits)", merge_kernel, grid, dim3(kMergeThreads), 0, stream, rows, heads, head_dim,
         part, out);
}

}  // namespace

}  // namespace fineserve::gpu
