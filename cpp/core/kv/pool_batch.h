// One iteration's worth of KV pool operations in one call, so the scheduler crosses into native
// code once per step instead of once per sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_pool.h"

namespace fineserve::kv {

struct PoolBatch {
  // Frees: free_models[i] releases free_counts[i] ids, taken in order from free_ids.
  std::vector<ModelId> free_models;
  std::vector<uint32_t> free_counts;
  std::vector<BlockId> free_ids;
  std::vector<ModelId> alloc_models;
  std::vector<uint32_t> alloc_counts;
  std::vector<ModelId> live_models;
  std::vector<uint64_t> live_tokens;
};

struct PoolBatchResult {
  std::vector<BlockId> ids;           // the granted ids of every alloc, concatenated
  std::vector<uint32_t> starts;       // alloc i's ids are ids[starts[i] .. starts[i+1])
  std::vector<AllocResult> allocs;
};

// Applies frees, then allocs (each all or nothing, independently), then live-token counts.
// Everything that can be checked before acting is checked first: unknown models, malformed
// arrays, and live-token counts beyond what the model would hold if all its allocs succeed, so
// that an error never strands blocks already handed out. Frees are validated per entry by the
// pool; if entry k is bad, entries before it stay applied and the KvError names entry k.
// When a model's alloc runs out of memory its live-token count is capped at what it holds.
PoolBatchResult run_batch(KvPool& pool, const PoolBatch& batch);

}  // namespace fineserve::kv
