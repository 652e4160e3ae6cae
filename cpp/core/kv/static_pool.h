// Baseline: static per-model partitions, as when each model runs in its own vLLM engine with a
// fixed gpu_memory_utilization slice. A model's partition (ModelOptions::partition_bytes) is carved
// out of the pool when the model is added and is its alone until it is removed; nothing moves
// between models when demand shifts.
#pragma once

#include <utility>
#include <vector>

#include "kv/pool_base.h"

namespace fineserve::kv {

class StaticPartitionPool final : public PoolBase {
 public:
  explicit StaticPartitionPool(uint64_t pool_bytes);

  const char* policy() const override { return "static"; }
  ModelId add_model(const ModelOptions& options) override;
  void remove_model(ModelId model) override;
  AllocResult alloc(ModelId model, uint32_t n, std::vector<BlockId>* out) override;
  void free(ModelId model, const BlockId* ids, size_t n) override;
  uint64_t available_blocks(ModelId model) const override;
  uint64_t block_offset(ModelId model, BlockId id) const override;
  PoolStats stats() const override;

 private:
  struct Partition {
    uint64_t offset = 0;      // from the pool base, a multiple of kBlockGranule
    uint64_t bytes = 0;
    uint64_t blocks = 0;      // bytes / block_bytes
    uint64_t fresh = 0;       // local indices >= fresh were never handed out
    std::vector<uint32_t> free_local;  // LIFO free list of freed local indices (< fresh)
    std::vector<uint8_t> live;         // per local index < fresh: 1 allocated, 2 while freeing
  };

  uint64_t free_in(const Partition& p) const { return p.blocks - p.fresh + p.free_local.size(); }
  // The local index of one of `m`'s blocks; KvError ForeignBlock when `id` is not one.
  uint64_t locate(const Model& m, const Partition& p, BlockId id) const;
  size_t first_fit(uint64_t bytes) const;  // index into holes_, or holes_.size() when none fits
  void return_hole(uint64_t offset, uint64_t bytes);

  std::vector<Partition> partitions_;  // indexed by ModelId
  // Free byte ranges of the pool (offset, bytes), kept sorted and coalesced.
  std::vector<std::pair<uint64_t, uint64_t>> holes_;
  uint64_t partitioned_bytes_ = 0;     // sum of live partitions: the pool's held bytes
  std::vector<uint64_t> free_scratch_; // local indices validated by the current free()
};

}  // namespace fineserve::kv
