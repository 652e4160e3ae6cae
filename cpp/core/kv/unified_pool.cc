#include "kv/unified_pool.h"

#include <string>

namespace fineserve::kv {

namespace {

std::string bytes_str(uint64_t b) { return std::to_string(b) + " bytes"; }

uint64_t checked_block_bytes(uint64_t block_bytes) {
  if (block_bytes == 0) {
    throw KvError(KvErrc::InvalidArgument, "blockBytes = 0: the unified pool needs its block size");
  }
  // Block ids count 64-byte granules, so the one block size must be a whole number of them.
  return align_up(block_bytes, kBlockGranule);
}

}  // namespace

UnifiedBlockPool::UnifiedBlockPool(uint64_t pool_bytes, uint64_t block_bytes)
    : PoolBase(pool_bytes), block_bytes_(checked_block_bytes(block_bytes)), num_blocks_(pool_bytes / block_bytes_) {
  if (num_blocks_ == 0) {
    throw KvError(KvErrc::InvalidArgument, "blockBytes = " + std::to_string(block_bytes) +
                                               ": a block of " + bytes_str(block_bytes_) +
                                               " does not fit poolBytes = " + std::to_string(pool_bytes));
  }
}

ModelId UnifiedBlockPool::add_model(const ModelOptions& options) {
  // Checked before the model is registered so a rejected model leaves no trace; an invalid
  // geometry is left for insert_model to report in the shared wording.
  if (validate(options.geometry).empty()) {
    uint64_t need = make_layout(options.geometry).block_bytes;
    if (need > block_bytes_) {
      throw KvError(KvErrc::OversizeGeometry,
                    "model \"" + options.name + "\": a KV block of " + bytes_str(need) + " (" +
                        std::to_string(options.geometry.tokens_per_block) + " tokens x " +
                        std::to_string(options.geometry.num_layers) +
                        " layers) does not fit the unified block of " + bytes_str(block_bytes_) +
                        "; use fewer tokensPerBlock or a larger blockBytes");
    }
  }
  return insert_model(options);
}

void UnifiedBlockPool::remove_model(ModelId id) {
  uint64_t left = model(id).live_blocks;  // throws UnknownModel
  // A scan instead of a per-model block list keeps alloc and free O(1); removal is rare.
  for (uint64_t b = 0; b < fresh_ && left > 0; ++b) {
    if (owner_[b] == id) {
      owner_[b] = kFree;
      free_blocks_.push_back(static_cast<uint32_t>(b));
      left--;
    }
  }
  erase_model(id);
}

uint64_t UnifiedBlockPool::available_blocks(ModelId id) const {
  model(id);
  return free_count();
}

AllocResult UnifiedBlockPool::alloc(ModelId id, uint32_t n, std::vector<BlockId>* out) {
  Model& m = model(id);
  uint64_t available = free_count();
  if (n > available) {
    record_oom(m);
    return {false, available};
  }
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t b;
    if (!free_blocks_.empty()) {
      b = free_blocks_.back();
      free_blocks_.pop_back();
    } else {
      // Handed out lazily so construction is O(1) however many blocks the pool holds.
      b = fresh_++;
      owner_.push_back(kFree);
    }
    owner_[b] = id;
    out->push_back(static_cast<BlockId>(b * block_bytes_ / kBlockGranule));
  }
  record_alloc(m, n, m.live_blocks * block_bytes_ + uint64_t{n} * block_bytes_,
               (num_blocks_ - free_count()) * block_bytes_);
  return {true, available - n};
}

uint64_t UnifiedBlockPool::locate(const Model& m, ModelId model, BlockId id) const {
  uint64_t offset = static_cast<uint64_t>(id) * kBlockGranule;
  if (offset % block_bytes_ != 0) throw_bad_id(KvErrc::ForeignBlock, m, id, "is not on a block boundary");
  uint64_t b = offset / block_bytes_;
  if (b >= num_blocks_) throw_bad_id(KvErrc::ForeignBlock, m, id, "is outside the pool");
  uint32_t owner = b < fresh_ ? owner_[b] : kFree;
  if (owner == kFreeing) throw_bad_id(KvErrc::DoubleFree, m, id, "is named twice in one free call");
  if (owner == kFree) throw_bad_id(KvErrc::DoubleFree, m, id, "is not allocated (double free)");
  if (owner != model) throw_bad_id(KvErrc::ForeignBlock, m, id, "belongs to another model");
  return b;
}

void UnifiedBlockPool::free(ModelId id, const BlockId* ids, size_t n) {
  Model& m = model(id);
  // owner_ is kFreeing for the ids this call has claimed.
  claim_all(
      ids, n, &free_scratch_,
      [&](BlockId block) {
        uint64_t b = locate(m, id, block);
        owner_[b] = kFreeing;
        return b;
      },
      [&](uint64_t b) { owner_[b] = id; });
  for (uint64_t b : free_scratch_) {
    owner_[b] = kFree;
    free_blocks_.push_back(static_cast<uint32_t>(b));
  }
  record_free(m, n);
}

uint64_t UnifiedBlockPool::block_offset(ModelId id, BlockId block) const {
  const Model& m = model(id);
  return locate(m, id, block) * block_bytes_;
}

PoolStats UnifiedBlockPool::stats() const {
  PoolStats pool;
  for (ModelId id = 0; id < models().size(); ++id) {
    if (!models()[id].active) continue;
    ModelStats s = base_stats(id);
    s.block_bytes = block_bytes_;
    s.blocks_per_slab = 1;
    s.held_bytes = s.live_blocks * block_bytes_;
    // The padding up to the unified block size is inside allocated blocks: internal waste.
    s.internal_bytes = s.held_bytes - s.live_token_bytes;
    s.external_bytes = 0;
    s.tail_bytes = 0;
    pool.models.push_back(std::move(s));
  }
  pool.slab_bytes = block_bytes_;
  pool.num_slabs = num_blocks_;
  pool.free_slabs = free_count();
  pool.free_bytes = pool.free_slabs * block_bytes_;
  pool.unusable_bytes = pool_bytes() - num_blocks_ * block_bytes_;
  finish_pool_stats(&pool);
  return pool;
}

}  // namespace fineserve::kv
