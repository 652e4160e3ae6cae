// Baseline: one pool of fixed-size blocks shared by every model (MuxServe-style unified KV cache).
// Every model's block is padded to the pool's block size, which must be at least the largest
// geometry, so there is no external fragmentation but small-KV models waste the padding
// (internal fragmentation, challenge C2 in fineserve-notes.md §1.3).
#pragma once

#include <vector>

#include "kv/pool_base.h"

namespace fineserve::kv {

class UnifiedBlockPool final : public PoolBase {
 public:
  // block_bytes is rounded up to kBlockGranule.
  UnifiedBlockPool(uint64_t pool_bytes, uint64_t block_bytes);

  const char* policy() const override { return "unified"; }
  ModelId add_model(const ModelOptions& options) override;
  void remove_model(ModelId model) override;
  AllocResult alloc(ModelId model, uint32_t n, std::vector<BlockId>* out) override;
  void free(ModelId model, const BlockId* ids, size_t n) override;
  uint64_t available_blocks(ModelId model) const override;
  uint64_t block_offset(ModelId model, BlockId id) const override;
  PoolStats stats() const override;

 private:
  static constexpr uint32_t kFree = UINT32_MAX;
  static constexpr uint32_t kFreeing = UINT32_MAX - 1;  // owner_ while a free() validates

  uint64_t free_count() const { return num_blocks_ - fresh_ + free_blocks_.size(); }
  // The pool block index of one of `model`'s live blocks; KvError like free() otherwise.
  uint64_t locate(const Model& m, ModelId model, BlockId id) const;

  uint64_t block_bytes_;
  uint64_t num_blocks_;
  uint64_t fresh_ = 0;                 // block indices >= fresh_ were never handed out
  std::vector<uint32_t> free_blocks_;  // LIFO stack of freed block indices (< fresh_)
  std::vector<uint32_t> owner_;        // per block index < fresh_: ModelId, or kFree
  std::vector<uint64_t> free_scratch_; // block indices validated by the current free()
};

}  // namespace fineserve::kv
