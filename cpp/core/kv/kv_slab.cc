#include "kv/kv_slab.h"

#include <algorithm>

namespace fineserve::kv {

namespace {

constexpr uint64_t kMiB = 1ull << 20;
// Bucketing partial slabs costs two words per possible used-count; beyond this many blocks per
// slab the geometry is degenerate for the slab size anyway.
constexpr uint64_t kMaxBlocksPerSlab = 1ull << 18;

std::string bytes_str(uint64_t b) { return std::to_string(b) + " bytes"; }

}  // namespace

uint64_t KvSlab::auto_slab_bytes(uint64_t pool_bytes) {
  if (pool_bytes < 2 * kMiB) return pool_bytes / kBlockGranule * kBlockGranule;
  uint64_t target = std::max<uint64_t>(pool_bytes / 256, 2 * kMiB);
  uint64_t pow2 = 2 * kMiB;
  while (pow2 * 2 <= target && pow2 < 64 * kMiB) pow2 *= 2;
  return pow2;
}

KvSlab::KvSlab(const KvSlabOptions& o)
    : PoolBase(o.pool_bytes),
      slab_bytes_(o.slab_bytes == 0 ? auto_slab_bytes(o.pool_bytes) : o.slab_bytes),
      max_tail_fraction_(o.max_tail_fraction) {
  if (slab_bytes_ == 0 || slab_bytes_ % kBlockGranule != 0 || slab_bytes_ > o.pool_bytes) {
    throw KvError(KvErrc::InvalidArgument,
                  "slabBytes = " + std::to_string(slab_bytes_) +
                      ": must be a non-zero multiple of 64 and at most poolBytes (" +
                      std::to_string(o.pool_bytes) + ")");
  }
  if (!(o.max_tail_fraction >= 0.0 && o.max_tail_fraction < 1.0)) {
    throw KvError(KvErrc::InvalidArgument,
                  "maxTailFraction = " + std::to_string(o.max_tail_fraction) + ": must be in [0, 1)");
  }
  uint64_t n = o.pool_bytes / slab_bytes_;
  slabs_.resize(n);
  free_slabs_.reserve(n);
  // Pushed in reverse so slab 0 is handed out first: low addresses fill first.
  for (uint64_t i = n; i-- > 0;) free_slabs_.push_back(static_cast<uint32_t>(i));
  arena_ = make_arena(o.memory, o.pool_bytes);
}

KvSlab::~KvSlab() = default;

uint64_t KvSlab::outstanding_reserve(const Owner& o) const {
  return o.guaranteed_slabs > o.slabs_held ? o.guaranteed_slabs - o.slabs_held : 0;
}

// Free slabs this model may take: all of them except those other models are still owed by their
// reserves. free_slabs_.size() >= total_outstanding_ always holds (add_model admits a reserve only
// when it does, and taking or releasing a slab moves both sides together).
uint64_t KvSlab::new_slabs_allowed(ModelId model) const {
  uint64_t others = total_outstanding_ - outstanding_reserve(owners_[model]);
  uint64_t free = free_slabs_.size();
  return free > others ? free - others : 0;
}

uint64_t KvSlab::available_blocks(ModelId id) const {
  const Model& m = model(id);
  const Owner& o = owners_[id];
  return o.slabs_held * o.blocks_per_slab - m.live_blocks + new_slabs_allowed(id) * o.blocks_per_slab;
}

ModelId KvSlab::add_model(const ModelOptions& options) {
  ModelId id = insert_model(options);  // validates the geometry and the name
  const KvLayout& l = layout(id);
  auto reject = [&](KvErrc code, const std::string& why) {
    erase_model(id);
    throw KvError(code, "model \"" + options.name + "\": " + why);
  };
  if (l.block_bytes > slab_bytes_) {
    reject(KvErrc::OversizeGeometry,
           "a KV block of " + bytes_str(l.block_bytes) + " (" +
               std::to_string(options.geometry.tokens_per_block) + " tokens x " +
               std::to_string(options.geometry.num_layers) + " layers) does not fit a slab of " +
               bytes_str(slab_bytes_) + "; use fewer tokensPerBlock or a larger slabBytes");
  }
  uint64_t bps = slab_bytes_ / l.block_bytes;
  uint64_t tail = slab_bytes_ - bps * l.block_bytes;
  if (static_cast<double>(tail) > max_tail_fraction_ * static_cast<double>(slab_bytes_)) {
    reject(KvErrc::OversizeGeometry,
           "KV blocks of " + bytes_str(l.block_bytes) + " leave " + bytes_str(tail) +
               " of every " + bytes_str(slab_bytes_) + " slab unused (" +
               std::to_string(100.0 * tail / slab_bytes_) + " %, limit " +
               std::to_string(100.0 * max_tail_fraction_) +
               " %); change tokensPerBlock or slabBytes, or raise maxTailFraction");
  }
  if (bps > kMaxBlocksPerSlab) {
    reject(KvErrc::InvalidGeometry, "KV blocks of " + bytes_str(l.block_bytes) + " are too small for " +
                                        bytes_str(slab_bytes_) + " slabs (more than " +
                                        std::to_string(kMaxBlocksPerSlab) +
                                        " per slab); use more tokensPerBlock");
  }
  uint64_t guaranteed = (options.reserve_blocks + bps - 1) / bps;
  uint64_t unreserved = free_slabs_.size() - total_outstanding_;
  if (guaranteed > unreserved) {
    reject(KvErrc::ReserveUnavailable,
           "reserveBlocks = " + std::to_string(options.reserve_blocks) + " needs " +
               std::to_string(guaranteed) + " slabs of " + std::to_string(bps) + " blocks; only " +
               std::to_string(unreserved) + " slabs are free and not reserved by other models");
  }
  if (owners_.size() <= id) owners_.resize(id + 1);
  Owner& o = owners_[id];
  o.blocks_per_slab = bps;
  o.slabs_held = 0;
  o.guaranteed_slabs = guaranteed;
  o.bucket_head.assign(bps + 1, kNone);
  o.nonempty.resize(bps + 1);
  total_outstanding_ += guaranteed;
  return id;
}

void KvSlab::remove_model(ModelId id) {
  model(id);  // throws UnknownModel
  Owner& o = owners_[id];
  // Drop the whole reserve first: release() below must not count the model's slabs as owed.
  total_outstanding_ -= outstanding_reserve(o);
  o.guaranteed_slabs = 0;
  for (uint32_t s = 0; s < slabs_.size(); ++s) {
    if (slabs_[s].owner == id) {
      slabs_[s].used = 0;
      std::fill(slabs_[s].live.begin(), slabs_[s].live.end(), 0);
      release(s);
    }
  }
  o = Owner{};
  erase_model(id);
}

void KvSlab::bucket_insert(Owner& o, uint32_t s) {
  Slab& sl = slabs_[s];
  uint32_t& head = o.bucket_head[sl.used];
  sl.prev = kNone;
  sl.next = head;
  if (head != kNone) slabs_[head].prev = s;
  head = s;
  o.nonempty.insert(sl.used);
}

void KvSlab::bucket_remove(Owner& o, uint32_t s) {
  Slab& sl = slabs_[s];
  if (sl.prev != kNone) slabs_[sl.prev].next = sl.next;
  else o.bucket_head[sl.used] = sl.next;
  if (sl.next != kNone) slabs_[sl.next].prev = sl.prev;
  if (o.bucket_head[sl.used] == kNone) o.nonempty.erase(sl.used);
  sl.prev = sl.next = kNone;
}

void KvSlab::carve(uint32_t s, ModelId id) {
  Owner& o = owners_[id];
  if (o.slabs_held < o.guaranteed_slabs) total_outstanding_--;
  o.slabs_held++;
  slabs_in_use_++;
  Slab& sl = slabs_[s];
  sl.owner = id;
  sl.used = 0;
  sl.fresh = 0;
  sl.free_local.clear();
  // A released slab has every live flag cleared, so resizing keeps the array all zero; blocks are
  // carved lazily through `fresh`, which keeps carving O(1) however many blocks the slab holds.
  sl.live.resize(o.blocks_per_slab, 0);
}

void KvSlab::release(uint32_t s) {
  Slab& sl = slabs_[s];
  Owner& o = owners_[sl.owner];
  o.slabs_held--;
  if (o.slabs_held < o.guaranteed_slabs) total_outstanding_++;
  slabs_in_use_--;
  sl.owner = kNone;
  free_slabs_.push_back(s);
}

uint32_t KvSlab::take_block(Owner& o, uint32_t s) {
  Slab& sl = slabs_[s];
  uint32_t local;
  if (!sl.free_local.empty()) {
    local = sl.free_local.back();
    sl.free_local.pop_back();
  } else {
    local = sl.fresh++;
  }
  sl.live[local] = kLive;
  sl.used++;
  if (sl.used < o.blocks_per_slab) bucket_insert(o, s);  // a full slab is in no bucket
  return local;
}

AllocResult KvSlab::alloc(ModelId id, uint32_t n, std::vector<BlockId>* out) {
  Model& m = model(id);
  uint64_t available = available_blocks(id);
  if (n > available) {
    record_oom(m);
    return {false, available};
  }
  Owner& o = owners_[id];
  const uint64_t block_bytes = m.layout.block_bytes;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t s;
    if (!o.nonempty.empty()) {
      s = o.bucket_head[o.nonempty.max()];  // the fullest partial slab
      bucket_remove(o, s);
    } else {
      s = free_slabs_.back();
      free_slabs_.pop_back();
      carve(s, id);
    }
    uint32_t local = take_block(o, s);
    out->push_back(static_cast<BlockId>((s * slab_bytes_ + local * block_bytes) / kBlockGranule));
  }
  record_alloc(m, n, o.slabs_held * slab_bytes_, slabs_in_use_ * slab_bytes_);
  return {true, available - n};
}

void KvSlab::locate(const Model& m, BlockId id, uint32_t* slab_index, uint32_t* local) const {
  uint64_t offset = static_cast<uint64_t>(id) * kBlockGranule;
  uint64_t s = offset / slab_bytes_;
  if (s >= slabs_.size()) throw_bad_id(KvErrc::ForeignBlock, m, id, "is outside the pool");
  ModelId owner_id = static_cast<ModelId>(&m - models().data());
  if (slabs_[s].owner != owner_id) {
    throw_bad_id(KvErrc::ForeignBlock, m, id, "is not in a slab this model holds");
  }
  uint64_t within = offset - s * slab_bytes_;
  if (within % m.layout.block_bytes != 0) {
    throw_bad_id(KvErrc::ForeignBlock, m, id, "is not on one of this model's block boundaries");
  }
  uint64_t l = within / m.layout.block_bytes;
  if (l >= owners_[owner_id].blocks_per_slab) {
    throw_bad_id(KvErrc::ForeignBlock, m, id, "lies in the unused tail of its slab");
  }
  *slab_index = static_cast<uint32_t>(s);
  *local = static_cast<uint32_t>(l);
}

void KvSlab::free(ModelId id, const BlockId* ids, size_t n) {
  Model& m = model(id);
  claim_all(
      ids, n, &free_scratch_,
      [&](BlockId block) {
        uint32_t s = 0, local = 0;
        locate(m, block, &s, &local);
        require_live(m, block, slabs_[s].live[local]);
        slabs_[s].live[local] = kClaimed;
        return std::make_pair(s, local);
      },
      [&](const std::pair<uint32_t, uint32_t>& k) { slabs_[k.first].live[k.second] = kLive; });
  Owner& o = owners_[id];
  for (auto [s, local] : free_scratch_) {
    Slab& sl = slabs_[s];
    if (sl.used < o.blocks_per_slab) bucket_remove(o, s);  // a full slab is in no bucket
    sl.live[local] = 0;
    sl.free_local.push_back(local);
    sl.used--;
    if (sl.used == 0) release(s);
    else bucket_insert(o, s);
  }
  record_free(m, n);
}

uint64_t KvSlab::block_offset(ModelId id, BlockId block) const {
  const Model& m = model(id);
  uint32_t s, local;
  locate(m, block, &s, &local);
  require_live(m, block, slabs_[s].live[local]);
  return static_cast<uint64_t>(block) * kBlockGranule;
}

uint64_t KvSlab::compact(ModelId id, uint64_t max_slabs, std::vector<BlockMove>* moves) {
  Model& m = model(id);
  Owner& o = owners_[id];
  const uint64_t bps = o.blocks_per_slab;
  const uint64_t block_bytes = m.layout.block_bytes;
  uint64_t released = 0;
  while (released < max_slabs && !o.nonempty.empty()) {
    uint32_t src = o.bucket_head[o.nonempty.min()];  // the emptiest partial slab
    uint64_t to_move = slabs_[src].used;
    // Free blocks in the model's other slabs (full slabs have none, so only partial ones count).
    uint64_t room = o.slabs_held * bps - m.live_blocks - (bps - to_move);
    if (room < to_move) break;
    bucket_remove(o, src);
    Slab& from = slabs_[src];
    for (uint32_t l = 0; l < from.fresh && from.used > 0; ++l) {
      if (from.live[l] != kLive) continue;
      uint32_t dst = o.bucket_head[o.nonempty.max()];  // fill the fullest slab first, as alloc does
      bucket_remove(o, dst);
      uint32_t local = take_block(o, dst);
      uint64_t src_offset = src * slab_bytes_ + l * block_bytes;
      uint64_t dst_offset = dst * slab_bytes_ + local * block_bytes;
      if (arena_) arena_->copy(dst_offset, src_offset, block_bytes);
      from.live[l] = 0;
      from.used--;
      moves->push_back({static_cast<BlockId>(src_offset / kBlockGranule),
                        static_cast<BlockId>(dst_offset / kBlockGranule)});
      m.counters.blocks_moved++;
    }
    release(src);
    released++;
  }
  return released;
}

PoolStats KvSlab::stats() const {
  PoolStats pool;
  for (ModelId id = 0; id < models().size(); ++id) {
    if (!models()[id].active) continue;
    const Owner& o = owners_[id];
    ModelStats s = base_stats(id);
    uint64_t b = models()[id].layout.block_bytes;
    s.block_bytes = b;
    s.blocks_per_slab = o.blocks_per_slab;
    s.slabs_held = o.slabs_held;
    s.held_bytes = o.slabs_held * slab_bytes_;
    s.internal_bytes = s.live_blocks * b - s.live_token_bytes;
    s.external_bytes = (o.slabs_held * o.blocks_per_slab - s.live_blocks) * b;
    s.tail_bytes = o.slabs_held * (slab_bytes_ - o.blocks_per_slab * b);
    pool.models.push_back(std::move(s));
  }
  pool.slab_bytes = slab_bytes_;
  pool.num_slabs = slabs_.size();
  pool.free_slabs = free_slabs_.size();
  pool.free_bytes = pool.free_slabs * slab_bytes_;
  pool.unusable_bytes = pool_bytes() - pool.num_slabs * slab_bytes_;
  finish_pool_stats(&pool);
  return pool;
}

}  // namespace fineserve::kv
