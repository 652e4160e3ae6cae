#include "kv/static_pool.h"

#include <algorithm>
#include <string>

namespace fineserve::kv {

namespace {

std::string bytes_str(uint64_t b) { return std::to_string(b) + " bytes"; }

}  // namespace

StaticPartitionPool::StaticPartitionPool(uint64_t pool_bytes) : PoolBase(pool_bytes) {
  holes_.emplace_back(0, pool_bytes);
}

size_t StaticPartitionPool::first_fit(uint64_t bytes) const {
  for (size_t i = 0; i < holes_.size(); ++i) {
    if (holes_[i].second >= bytes) return i;
  }
  return holes_.size();
}

void StaticPartitionPool::return_hole(uint64_t offset, uint64_t bytes) {
  auto it = std::lower_bound(holes_.begin(), holes_.end(), std::make_pair(offset, uint64_t{0}));
  it = holes_.insert(it, {offset, bytes});
  // Coalesce with the next hole, then the previous one, so a freed partition and its free
  // neighbours become one range again and a later, larger partition can use it.
  auto next = it + 1;
  if (next != holes_.end() && it->first + it->second == next->first) {
    it->second += next->second;
    holes_.erase(next);
  }
  if (it != holes_.begin()) {
    auto prev = it - 1;
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      holes_.erase(it);
    }
  }
}

ModelId StaticPartitionPool::add_model(const ModelOptions& options) {
  if (options.partition_bytes == 0) {
    throw KvError(KvErrc::InvalidArgument, "partitionBytes = 0: model \"" + options.name +
                                               "\" needs a partition under the static policy");
  }
  // Partitions start and end on the block-id granule so every block id is exact.
  const uint64_t bytes = options.partition_bytes / kBlockGranule * kBlockGranule;
  size_t hole = holes_.size();
  uint64_t block_bytes = 0;
  // Everything is checked before the model is registered, so a rejected model leaves no trace. An
  // invalid geometry is left for insert_model to report in the shared wording.
  if (validate(options.geometry).empty()) {
    block_bytes = make_layout(options.geometry).block_bytes;
    if (bytes < block_bytes) {
      throw KvError(KvErrc::OversizeGeometry,
                    "model \"" + options.name + "\": a KV block of " + bytes_str(block_bytes) +
                        " does not fit its partition of " + bytes_str(bytes) + " (partitionBytes = " +
                        std::to_string(options.partition_bytes) + ")");
    }
    hole = first_fit(bytes);
    if (hole == holes_.size()) {
      uint64_t free = 0, largest = 0;
      for (const auto& h : holes_) {
        free += h.second;
        largest = std::max(largest, h.second);
      }
      throw KvError(KvErrc::InvalidArgument,
                    "partitionBytes = " + std::to_string(options.partition_bytes) + ": model \"" +
                        options.name + "\" does not fit: " + bytes_str(free) +
                        " of the pool are free, the largest free range is " + bytes_str(largest));
    }
  }
  ModelId id = insert_model(options);
  if (partitions_.size() <= id) partitions_.resize(id + 1);
  Partition& p = partitions_[id];
  p = Partition{};
  p.offset = holes_[hole].first;
  p.bytes = bytes;
  p.blocks = bytes / block_bytes;
  holes_[hole].first += bytes;
  holes_[hole].second -= bytes;
  if (holes_[hole].second == 0) holes_.erase(holes_.begin() + static_cast<std::ptrdiff_t>(hole));
  partitioned_bytes_ += bytes;
  return id;
}

void StaticPartitionPool::remove_model(ModelId id) {
  model(id);  // throws UnknownModel
  Partition& p = partitions_[id];
  return_hole(p.offset, p.bytes);
  partitioned_bytes_ -= p.bytes;
  p = Partition{};
  erase_model(id);
}

uint64_t StaticPartitionPool::available_blocks(ModelId id) const {
  model(id);
  return free_in(partitions_[id]);
}

AllocResult StaticPartitionPool::alloc(ModelId id, uint32_t n, std::vector<BlockId>* out) {
  Model& m = model(id);
  Partition& p = partitions_[id];
  uint64_t available = free_in(p);
  if (n > available) {
    record_oom(m);
    return {false, available};
  }
  const uint64_t block_bytes = m.layout.block_bytes;
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t local;
    if (!p.free_local.empty()) {
      local = p.free_local.back();
      p.free_local.pop_back();
    } else {
      // Carved lazily so adding a model is O(1) however many blocks its partition holds.
      local = p.fresh++;
      p.live.push_back(0);
    }
    p.live[local] = 1;
    out->push_back(static_cast<BlockId>((p.offset + local * block_bytes) / kBlockGranule));
  }
  record_alloc(m, n, p.bytes, partitioned_bytes_);
  return {true, available - n};
}

uint64_t StaticPartitionPool::locate(const Model& m, const Partition& p, BlockId id) const {
  uint64_t offset = static_cast<uint64_t>(id) * kBlockGranule;
  if (offset < p.offset || offset >= p.offset + p.blocks * m.layout.block_bytes) {
    throw_bad_id(KvErrc::ForeignBlock, m, id, "is outside this model's partition");
  }
  uint64_t within = offset - p.offset;
  if (within % m.layout.block_bytes != 0) {
    throw_bad_id(KvErrc::ForeignBlock, m, id, "is not on one of this model's block boundaries");
  }
  return within / m.layout.block_bytes;
}

void StaticPartitionPool::free(ModelId id, const BlockId* ids, size_t n) {
  Model& m = model(id);
  Partition& p = partitions_[id];
  claim_all(
      ids, n, &free_scratch_,
      [&](BlockId block) {
        uint64_t local = locate(m, p, block);
        require_live(m, block, local < p.fresh ? p.live[local] : 0);
        p.live[local] = kClaimed;
        return local;
      },
      [&](uint64_t local) { p.live[local] = kLive; });
  for (uint64_t local : free_scratch_) {
    p.live[local] = 0;
    p.free_local.push_back(static_cast<uint32_t>(local));
  }
  record_free(m, n);
}

uint64_t StaticPartitionPool::block_offset(ModelId id, BlockId block) const {
  const Model& m = model(id);
  const Partition& p = partitions_[id];
  uint64_t local = locate(m, p, block);
  require_live(m, block, local < p.fresh ? p.live[local] : 0);
  return static_cast<uint64_t>(block) * kBlockGranule;
}

PoolStats StaticPartitionPool::stats() const {
  PoolStats pool;
  for (ModelId id = 0; id < models().size(); ++id) {
    if (!models()[id].active) continue;
    const Partition& p = partitions_[id];
    ModelStats s = base_stats(id);
    const uint64_t b = models()[id].layout.block_bytes;
    s.block_bytes = b;
    s.blocks_per_slab = p.blocks;
    s.held_bytes = p.bytes;
    s.internal_bytes = s.live_blocks * b - s.live_token_bytes;
    // Free blocks of a partition are stranded: no other model can use them.
    s.external_bytes = free_in(p) * b;
    s.tail_bytes = p.bytes - p.blocks * b;
    pool.models.push_back(std::move(s));
  }
  pool.slab_bytes = 0;
  pool.num_slabs = pool.models.size();
  pool.free_slabs = 0;
  for (const auto& h : holes_) pool.free_bytes += h.second;
  pool.unusable_bytes = 0;
  finish_pool_stats(&pool);
  return pool;
}

}  // namespace fineserve::kv
