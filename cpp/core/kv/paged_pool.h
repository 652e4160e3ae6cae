// Baseline: a page-granular on-demand pool in the style of kvcached (Prism). Each model sees its
// own contiguous virtual KV range; physical pages of page_bytes are mapped under it when a block
// first touches them and unmapped when no live block does. Blocks of one model are packed with no
// tail, so fragmentation is only the unused part of mapped pages, but every map and unmap costs
// driver time (challenge C3 in fineserve-notes.md §1.3), which this pool charges as a modelled
// map_cost_ns per operation.
//
// It is an accounting model: ids are virtual block indices within the model's range and no memory
// is mapped (there is no VMM on the CPU backend); block_offset() returns the virtual offset.
#pragma once

#include <vector>

#include "kv/pool_base.h"

namespace fineserve::kv {

class PagedPool final : public PoolBase {
 public:
  PagedPool(uint64_t pool_bytes, uint64_t page_bytes, uint64_t map_cost_ns);

  const char* policy() const override { return "paged"; }
  ModelId add_model(const ModelOptions& options) override;
  void remove_model(ModelId model) override;
  AllocResult alloc(ModelId model, uint32_t n, std::vector<BlockId>* out) override;
  void free(ModelId model, const BlockId* ids, size_t n) override;
  uint64_t available_blocks(ModelId model) const override;
  uint64_t block_offset(ModelId model, BlockId id) const override;
  PoolStats stats() const override;

 private:
  struct Space {
    std::vector<uint8_t> live;              // per virtual block index < high: 1 live, 2 while freeing
    std::vector<uint32_t> page_refs;        // per virtual page: live blocks touching it
    std::vector<uint32_t> free_below;       // freed indices below `high` (a min-heap)
    uint64_t high = 0;                      // indices >= high were never used
    uint64_t mapped_pages = 0;
  };

  // How many of the model's lowest free virtual blocks (the ones alloc hands out next) the free
  // pages can back, counting at most `limit`. alloc and available_blocks both use it, so
  // alloc(n) succeeds exactly when n <= available_blocks().
  uint64_t placeable(const Space& s, uint64_t block_bytes, uint64_t limit) const;
  void map_block(Space& s, uint64_t block_bytes, uint64_t index);
  void unmap_block(Space& s, uint64_t block_bytes, uint64_t index);
  // The virtual index of one of `m`'s live blocks; KvError like free() otherwise.
  uint64_t locate(const Model& m, const Space& s, BlockId id) const;
  uint64_t page_bytes_;
  uint64_t map_cost_ns_;
  uint64_t num_pages_;
  uint64_t free_pages_;
  uint64_t map_calls_ = 0;
  std::vector<Space> spaces_;  // indexed by ModelId
  std::vector<uint64_t> free_scratch_;  // indices validated by the current free()
};

}  // namespace fineserve::kv
