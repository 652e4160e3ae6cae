// The KV Slab (FineServe §2): one pool per device, cut into equal slabs; a free slab is handed to
// one model's block geometry at a time and cut into equal blocks, and goes back to the free list
// for any geometry when its last block is freed.
//
// Beyond the reference allocator (fineserve-notes.md §2.9):
// - one pool for every model whatever its depth: a block holds all layers (kv_geometry.h);
// - the fullest partial slab is used first, so live blocks concentrate and slabs empty sooner;
// - a per-model minimum reserve of blocks that other models cannot take;
// - a fixed slab size with bounded tail waste instead of 2 x LCM(block sizes), which is unbounded:
//   a geometry is accepted when its tail (slab_bytes mod block_bytes) is at most
//   max_tail_fraction of a slab;
// - O(1) alloc and free per block (bucketed partial slabs with a hierarchical bitmap), and no
//   slab-0 special case: slab indices are plain indices;
// - compaction: a model's stranded free blocks (its demand fell, its long requests keep many slabs
//   part-full) can be reclaimed by moving its live blocks out of its emptiest slabs (compact()).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kv/kv_arena.h"
#include "kv/max_bitset.h"
#include "kv/pool_base.h"

namespace fineserve::kv {

struct KvSlabOptions {
  uint64_t pool_bytes = 0;
  // 0 picks a power of two between 2 MiB and 64 MiB giving the pool about 256 slabs.
  uint64_t slab_bytes = 0;
  // A geometry whose per-slab tail would exceed this share of a slab is rejected.
  double max_tail_fraction = 0.125;
  // Where the pool's memory lives: "host" (the CPU backend), "cuda:N", or "none" for
  // accounting-only use (simulator, benchmarks), where only the bookkeeping is wanted.
  std::string memory = "none";
};

class KvSlab final : public PoolBase {
 public:
  explicit KvSlab(const KvSlabOptions& options);
  ~KvSlab() override;

  const char* policy() const override { return "kv-slab"; }
  ModelId add_model(const ModelOptions& options) override;
  void remove_model(ModelId model) override;
  AllocResult alloc(ModelId model, uint32_t n, std::vector<BlockId>* out) override;
  void free(ModelId model, const BlockId* ids, size_t n) override;
  uint64_t available_blocks(ModelId model) const override;
  uint64_t block_offset(ModelId model, BlockId id) const override;
  uint64_t compact(ModelId model, uint64_t max_slabs, std::vector<BlockMove>* moves) override;
  PoolStats stats() const override;

  uint64_t slab_bytes() const { return slab_bytes_; }
  uint64_t num_slabs() const { return slabs_.size(); }
  // Base of the pool's memory (a device pointer for "cuda:N"), or nullptr when accounting-only.
  uint8_t* base() const { return arena_ ? arena_->base() : nullptr; }
  std::string memory() const { return arena_ ? arena_->where() : "none"; }

  static uint64_t auto_slab_bytes(uint64_t pool_bytes);

 private:
  static constexpr uint32_t kNone = UINT32_MAX;

  struct Slab {
    uint32_t owner = kNone;            // ModelId, or kNone when free
    uint32_t used = 0;                 // live blocks
    uint32_t fresh = 0;                // blocks never handed out since the slab was carved
    uint32_t prev = kNone, next = kNone;  // links in the owner's bucket list
    std::vector<uint32_t> free_local;  // freed local ids (LIFO)
    std::vector<uint8_t> live;         // per local id: 1 when allocated
  };

  // Per model: its partial slabs bucketed by how many blocks they use, so the fullest one is the
  // highest non-empty bucket.
  struct Owner {
    uint64_t blocks_per_slab = 0;
    uint64_t slabs_held = 0;
    uint64_t guaranteed_slabs = 0;     // ceil(reserve_blocks / blocks_per_slab)
    std::vector<uint32_t> bucket_head; // index = used count, 1 .. blocks_per_slab - 1
    MaxBitset nonempty;
  };

  uint64_t outstanding_reserve(const Owner& o) const;
  uint64_t new_slabs_allowed(ModelId model) const;
  void bucket_insert(Owner& o, uint32_t slab_index);
  void bucket_remove(Owner& o, uint32_t slab_index);
  void carve(uint32_t slab_index, ModelId model);
  // Takes one free block from slab s (which the caller has taken out of its bucket) and re-files it.
  uint32_t take_block(Owner& o, uint32_t s);
  void release(uint32_t slab_index);
  // Decodes and checks an id: the slab and local index of one of `model`'s blocks.
  void locate(const Model& m, BlockId id, uint32_t* slab_index, uint32_t* local) const;

  uint64_t slab_bytes_;
  double max_tail_fraction_;
  std::vector<Slab> slabs_;
  std::vector<uint32_t> free_slabs_;   // stack of free slab indices
  std::vector<Owner> owners_;          // indexed by ModelId
  uint64_t total_outstanding_ = 0;     // sum of outstanding_reserve over models
  uint64_t slabs_in_use_ = 0;
  std::vector<std::pair<uint32_t, uint32_t>> free_scratch_;  // (slab, local) of a free call's ids
  std::unique_ptr<KvArena> arena_;
};

}  // namespace fineserve::kv
