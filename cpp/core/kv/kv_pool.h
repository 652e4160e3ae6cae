// The interface every KV memory policy implements: the KV Slab and the baselines the paper compares
// against (static per-model partitions, a unified fixed-size block pool, a paged on-demand pool).
// The scheduler and the benchmarks talk only to KvPool, so every claim is a side-by-side run of the
// same calls.
//
// Semantics shared by all policies (the property tests check them for each one):
// - alloc(model, n) is all or nothing. It succeeds iff n <= available_blocks(model); on failure
//   it returns ok = false (out of memory is a result the scheduler acts on, not an exception) and
//   changes nothing.
// - free(model, ids) validates every id first (foreign, double freed, repeated in the call) and
//   throws KvError without freeing anything when one is bad. DoubleFree means the id names a
//   block slot the policy can see is free (or the id repeats within the call); anything else is
//   ForeignBlock. Which one a re-freed id gets depends on what the policy still knows: a KV Slab
//   block whose slab emptied and went back to the pool is ForeignBlock, since nothing then ties
//   the id to the model.
// - remove_model frees everything the model holds; its ids become foreign.
// - Accounting is exact: for every model
//     held_bytes = live_token_bytes + internal_bytes + external_bytes + tail_bytes
//   and for the pool
//     pool_bytes = free_bytes + unusable_bytes + sum(held_bytes).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kv/kv_geometry.h"

namespace fineserve::kv {

using ModelId = uint32_t;
// Physical pools: the block's byte offset from the pool base divided by kBlockGranule, so a kernel
// finds block b at base + b * 64 whatever the model's block size. (The paged baseline hands out
// virtual block indices instead; it is an accounting model, see paged_pool.h.)
using BlockId = uint32_t;
inline constexpr uint64_t kBlockGranule = 64;
// BlockId is 32 bits of 64-byte granules.
inline constexpr uint64_t kMaxPoolBytes = (uint64_t{1} << 32) * kBlockGranule;

enum class KvErrc {
  InvalidArgument,     // a bad option or count
  InvalidGeometry,     // a geometry field out of range
  OversizeGeometry,    // a block does not fit the policy's slab / block / partition
  UnknownModel,        // a model id that was never added or was removed
  DuplicateModel,      // a model name already in use
  DoubleFree,          // a block that is not allocated (or named twice in one call)
  ForeignBlock,        // an id that is not one of this model's blocks
  ReserveUnavailable,  // the minimum reserve asked for cannot be guaranteed
};

// "ERR_KV_UNKNOWN_MODEL" and so on: the codes the TypeScript errors carry.
const char* errc_code(KvErrc code);

class KvError : public std::runtime_error {
 public:
  KvError(KvErrc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  KvErrc code() const { return code_; }

 private:
  KvErrc code_;
};

struct ModelOptions {
  std::string name;
  KvGeometry geometry;
  // KV Slab: blocks this model can always get, whatever the other models hold.
  uint64_t reserve_blocks = 0;
  // Static partitions: this model's fixed share of the pool, in bytes (required there).
  uint64_t partition_bytes = 0;
};

// A live block that compact() moved: the caller replaces `from` by `to` in its block tables.
struct BlockMove {
  BlockId from;
  BlockId to;
};

struct AllocResult {
  bool ok;
  uint64_t available;  // blocks the model could get right now, after the call
};

struct ModelStats {
  ModelId id = 0;
  std::string name;
  KvGeometry geometry;
  uint64_t block_bytes = 0;       // this model's block as the policy stores it (padded in unified)
  uint64_t token_bytes = 0;       // exact bytes one token needs (layout().token_bytes)
  uint64_t blocks_per_slab = 0;   // blocks per slab / partition; 0 where not applicable
  uint64_t reserve_blocks = 0;
  uint64_t live_blocks = 0;
  uint64_t live_tokens = 0;
  uint64_t slabs_held = 0;        // slabs (kv-slab), pages (paged); 0 elsewhere
  uint64_t held_bytes = 0;        // memory no other model can use while this one holds it
  uint64_t live_token_bytes = 0;  // live_tokens * token_bytes
  uint64_t internal_bytes = 0;    // inside allocated blocks but not live tokens (slots, padding)
  uint64_t external_bytes = 0;    // free blocks inside held memory: stranded for other models
  uint64_t tail_bytes = 0;        // held memory too small to hold one more block
  uint64_t peak_live_blocks = 0;
  uint64_t peak_held_bytes = 0;
  uint64_t peak_live_token_bytes = 0;
  uint64_t alloc_calls = 0;
  uint64_t blocks_allocated = 0;
  uint64_t free_calls = 0;
  uint64_t blocks_freed = 0;
  uint64_t oom_count = 0;
  uint64_t blocks_moved = 0;      // by compact()
};

struct PoolStats {
  std::string policy;
  uint64_t pool_bytes = 0;
  uint64_t slab_bytes = 0;       // slab (kv-slab), block (unified), page (paged); 0 for static
  uint64_t num_slabs = 0;
  uint64_t free_slabs = 0;
  uint64_t free_bytes = 0;       // held by no model
  uint64_t unusable_bytes = 0;   // remainder of the pool no model can ever use
  uint64_t held_bytes = 0;       // sums over the models
  uint64_t live_token_bytes = 0;
  uint64_t internal_bytes = 0;
  uint64_t external_bytes = 0;
  uint64_t tail_bytes = 0;
  uint64_t peak_held_bytes = 0;        // pool-wide high-water marks
  uint64_t peak_live_token_bytes = 0;
  uint64_t map_calls = 0;        // paged: page map + unmap operations
  uint64_t map_cost_ns = 0;      // paged: modelled driver time they cost
  std::vector<ModelStats> models;
};

class KvPool {
 public:
  virtual ~KvPool() = default;
  KvPool() = default;
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  // "kv-slab", "static", "unified" or "paged".
  virtual const char* policy() const = 0;
  virtual uint64_t pool_bytes() const = 0;

  virtual ModelId add_model(const ModelOptions& options) = 0;
  virtual void remove_model(ModelId model) = 0;

  virtual AllocResult alloc(ModelId model, uint32_t n, std::vector<BlockId>* out) = 0;
  virtual void free(ModelId model, const BlockId* ids, size_t n) = 0;
  // Tokens the model's live sequences hold; at most live_blocks * tokens_per_block.
  virtual void set_live_tokens(ModelId model, uint64_t tokens) = 0;
  virtual uint64_t available_blocks(ModelId model) const = 0;
  virtual uint64_t live_blocks(ModelId model) const = 0;

  // Reclaims memory a model holds but does not use: moves its live blocks out of its emptiest
  // slabs into free blocks of its fuller ones, copying their bytes, and releases each emptied
  // slab to the pool, until `max_slabs` were released or no further slab can be emptied. Appends
  // the moves; block ids in them change, so the caller must rewrite its block tables. Returns the
  // slabs released. Policies with nothing to compact (fixed partitions, single-block units, pages
  // owned per model) return 0 and move nothing.
  virtual uint64_t compact(ModelId model, uint64_t max_slabs, std::vector<BlockMove>* moves) = 0;

  virtual const KvLayout& layout(ModelId model) const = 0;
  // Byte offset of a live block from the pool base (physical pools) or from the model's virtual
  // range (paged). Throws KvError like free() for an id that is not a live block of the model.
  virtual uint64_t block_offset(ModelId model, BlockId id) const = 0;

  virtual PoolStats stats() const = 0;
};

}  // namespace fineserve::kv
