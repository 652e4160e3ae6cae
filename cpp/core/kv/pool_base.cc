#include "kv/pool_base.h"

#include <algorithm>

namespace fineserve::kv {

const char* errc_code(KvErrc code) {
  switch (code) {
    case KvErrc::InvalidArgument: return "ERR_KV_INVALID_ARGUMENT";
    case KvErrc::InvalidGeometry: return "ERR_KV_INVALID_GEOMETRY";
    case KvErrc::OversizeGeometry: return "ERR_KV_OVERSIZE_GEOMETRY";
    case KvErrc::UnknownModel: return "ERR_KV_UNKNOWN_MODEL";
    case KvErrc::DuplicateModel: return "ERR_KV_DUPLICATE_MODEL";
    case KvErrc::DoubleFree: return "ERR_KV_DOUBLE_FREE";
    case KvErrc::ForeignBlock: return "ERR_KV_FOREIGN_BLOCK";
    case KvErrc::ReserveUnavailable: return "ERR_KV_RESERVE_UNAVAILABLE";
  }
  return "ERR_KV";
}

PoolBase::PoolBase(uint64_t pool_bytes) : pool_bytes_(pool_bytes) {
  if (pool_bytes == 0) throw KvError(KvErrc::InvalidArgument, "poolBytes = 0: the KV pool needs memory");
  if (pool_bytes > kMaxPoolBytes) {
    throw KvError(KvErrc::InvalidArgument, "poolBytes = " + std::to_string(pool_bytes) +
                                               ": at most 256 GiB per pool (32-bit block ids of 64 bytes)");
  }
}

ModelId PoolBase::insert_model(const ModelOptions& options) {
  if (options.name.empty()) throw KvError(KvErrc::InvalidArgument, "model name is empty");
  std::string err = validate(options.geometry);
  if (!err.empty()) {
    throw KvError(KvErrc::InvalidGeometry, "model \"" + options.name + "\": invalid KV geometry: " + err);
  }
  for (const Model& m : models_) {
    if (m.active && m.options.name == options.name) {
      throw KvError(KvErrc::DuplicateModel, "model \"" + options.name + "\" is already registered");
    }
  }
  // Ids are never reused, so a stale id from a removed model is always caught as unknown.
  Model m;
  m.active = true;
  m.options = options;
  m.layout = make_layout(options.geometry);
  models_.push_back(std::move(m));
  return static_cast<ModelId>(models_.size() - 1);
}

void PoolBase::erase_model(ModelId id) {
  Model& m = model(id);
  live_token_bytes_ -= m.live_tokens * m.layout.token_bytes;
  m.active = false;
  m.live_blocks = 0;
  m.live_tokens = 0;
}

PoolBase::Model& PoolBase::model(ModelId id) {
  return const_cast<Model&>(static_cast<const PoolBase*>(this)->model(id));
}

const PoolBase::Model& PoolBase::model(ModelId id) const {
  if (id >= models_.size() || !models_[id].active) {
    throw KvError(KvErrc::UnknownModel, "model id " + std::to_string(id) + " is not registered with this pool");
  }
  return models_[id];
}

const KvLayout& PoolBase::layout(ModelId id) const { return model(id).layout; }

void PoolBase::set_live_tokens(ModelId id, uint64_t tokens) {
  Model& m = model(id);
  uint64_t capacity = m.live_blocks * m.layout.geometry.tokens_per_block;
  if (tokens > capacity) {
    throw KvError(KvErrc::InvalidArgument, "model \"" + m.options.name + "\": liveTokens = " +
                                               std::to_string(tokens) + " exceeds its " +
                                               std::to_string(m.live_blocks) + " blocks (" +
                                               std::to_string(capacity) + " token slots)");
  }
  live_token_bytes_ -= m.live_tokens * m.layout.token_bytes;
  m.live_tokens = tokens;
  live_token_bytes_ += tokens * m.layout.token_bytes;
  m.counters.peak_live_token_bytes = std::max(m.counters.peak_live_token_bytes, tokens * m.layout.token_bytes);
  peak_live_token_bytes_ = std::max(peak_live_token_bytes_, live_token_bytes_);
}

void PoolBase::record_alloc(Model& m, uint32_t n, uint64_t model_held, uint64_t pool_held) {
  m.counters.alloc_calls++;
  m.counters.blocks_allocated += n;
  m.live_blocks += n;
  m.counters.peak_live_blocks = std::max(m.counters.peak_live_blocks, m.live_blocks);
  m.counters.peak_held_bytes = std::max(m.counters.peak_held_bytes, model_held);
  peak_held_bytes_ = std::max(peak_held_bytes_, pool_held);
}

void PoolBase::record_oom(Model& m) {
  m.counters.alloc_calls++;
  m.counters.oom_count++;
}

void PoolBase::record_free(Model& m, size_t n) {
  m.counters.free_calls++;
  m.counters.blocks_freed += n;
  m.live_blocks -= n;
  // Tokens in freed blocks are gone: clamp to what the remaining blocks can hold.
  uint64_t capacity = m.live_blocks * m.layout.geometry.tokens_per_block;
  if (m.live_tokens > capacity) {
    live_token_bytes_ -= (m.live_tokens - capacity) * m.layout.token_bytes;
    m.live_tokens = capacity;
  }
}

ModelStats PoolBase::base_stats(ModelId id) const {
  const Model& m = model(id);
  ModelStats s = m.counters;
  s.id = id;
  s.name = m.options.name;
  s.geometry = m.options.geometry;
  s.token_bytes = m.layout.token_bytes;
  s.reserve_blocks = m.options.reserve_blocks;
  s.live_blocks = m.live_blocks;
  s.live_tokens = m.live_tokens;
  s.live_token_bytes = m.live_tokens * m.layout.token_bytes;
  return s;
}

void PoolBase::finish_pool_stats(PoolStats* pool) const {
  pool->policy = policy();
  pool->pool_bytes = pool_bytes_;
  pool->held_bytes = pool->live_token_bytes = pool->internal_bytes = 0;
  pool->external_bytes = pool->tail_bytes = 0;
  for (const ModelStats& s : pool->models) {
    pool->held_bytes += s.held_bytes;
    pool->live_token_bytes += s.live_token_bytes;
    pool->internal_bytes += s.internal_bytes;
    pool->external_bytes += s.external_bytes;
    pool->tail_bytes += s.tail_bytes;
  }
  pool->peak_held_bytes = std::max(peak_held_bytes_, pool->held_bytes);
  pool->peak_live_token_bytes = peak_live_token_bytes_;
}

void PoolBase::require_live(const Model& m, BlockId id, uint8_t state) const {
  if (state == kLive) return;
  throw_bad_id(KvErrc::DoubleFree, m, id,
               state == kClaimed ? "is named twice in one free call" : "is not allocated (double free)");
}

void PoolBase::throw_bad_id(KvErrc code, const Model& m, BlockId id, const char* why) const {
  throw KvError(code, "model \"" + m.options.name + "\": block " + std::to_string(id) + " " + why);
}

}  // namespace fineserve::kv
