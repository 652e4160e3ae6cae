// How linear()'s GEMM paths split a matrix's output rows between the pool's threads: blocks sized
// to stay in L2, claimed one at a time. Shared by ops/linear.cc and quant/kquant_linear.cc.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "engine/thread_pool.h"

namespace fineserve::gemm {

// Weight bytes of one GEMM block: it stays in L2 while every token tile streams past it.
inline constexpr uint64_t kGemmBlockBytes = 192 * 1024;
// Block rows are a multiple of every tile width (3, 4 and 8), so only the last block has edge tiles.
inline constexpr size_t kGemmRowQuantum = 24;

inline size_t gemm_block_rows(uint64_t row_bytes, size_t out, unsigned threads, size_t quantum = kGemmRowQuantum) {
  size_t rows = std::clamp<size_t>(kGemmBlockBytes / std::max<uint64_t>(row_bytes, 1), quantum, 10 * quantum);
  // At least four blocks per thread, so a late thread does not hold the others up.
  rows = std::min(rows, std::max(quantum, (out + 4 * threads - 1) / (4 * threads)));
  return (rows + quantum - 1) / quantum * quantum;
}

// Runs block(r0, r1) over blocks of `rows` output rows. Blocks are claimed one at a time from a
// shared counter, not split up front: when another process takes a thread's core, the others
// finish its blocks instead of waiting for them. Which thread computes a block does not change
// its arithmetic.
template <class Block>
void for_row_blocks(engine::ThreadPool& pool, size_t out, size_t rows, const Block& block) {
  const size_t blocks = (out + rows - 1) / rows;
  std::atomic<size_t> next{0};
  pool.parallel_for(std::min<size_t>(pool.size(), blocks), [&](size_t, size_t) {
    for (size_t b = next.fetch_add(1, std::memory_order_relaxed); b < blocks;
         b = next.fetch_add(1, std::memory_order_relaxed)) {
      block(b * rows, std::min(out, (b + 1) * rows));
    }
  });
}

}  // namespace fineserve::gemm
