#include "kv/pool_batch.h"

#include <algorithm>
#include <string>
#include <unordered_map>

namespace fineserve::kv {

namespace {

[[noreturn]] void bad_batch(const std::string& why) {
  throw KvError(KvErrc::InvalidArgument, "invalid pool step: " + why);
}

}  // namespace

PoolBatchResult run_batch(KvPool& pool, const PoolBatch& b) {
  if (b.free_models.size() != b.free_counts.size()) bad_batch("frees have mismatched model and count arrays");
  if (b.alloc_models.size() != b.alloc_counts.size()) bad_batch("allocs have mismatched model and count arrays");
  if (b.live_models.size() != b.live_tokens.size()) bad_batch("liveTokens have mismatched model and token arrays");
  uint64_t named = 0;
  for (uint32_t c : b.free_counts) named += c;
  if (named != b.free_ids.size()) {
    bad_batch("frees name " + std::to_string(named) + " ids but " + std::to_string(b.free_ids.size()) + " were given");
  }

  // Upper bound of each model's blocks after the step, to check live tokens before acting.
  std::unordered_map<ModelId, int64_t> blocks_after;
  auto current_blocks = [&](ModelId m) -> int64_t& {
    auto it = blocks_after.find(m);
    if (it != blocks_after.end()) return it->second;
    return blocks_after.emplace(m, static_cast<int64_t>(pool.live_blocks(m))).first->second;
  };
  for (size_t i = 0; i < b.free_models.size(); ++i) {
    pool.layout(b.free_models[i]);  // UnknownModel before anything changes
    current_blocks(b.free_models[i]) -= b.free_counts[i];
  }
  for (size_t i = 0; i < b.alloc_models.size(); ++i) {
    pool.layout(b.alloc_models[i]);
    current_blocks(b.alloc_models[i]) += b.alloc_counts[i];
  }
  for (size_t i = 0; i < b.live_models.size(); ++i) {
    const KvLayout& l = pool.layout(b.live_models[i]);
    int64_t blocks = std::max<int64_t>(current_blocks(b.live_models[i]), 0);
    if (b.live_tokens[i] > static_cast<uint64_t>(blocks) * l.geometry.tokens_per_block) {
      bad_batch("liveTokens[" + std::to_string(i) + "] = " + std::to_string(b.live_tokens[i]) +
                " exceeds the " + std::to_string(blocks * l.geometry.tokens_per_block) +
                " token slots model " + std::to_string(b.live_models[i]) + " holds after this step");
    }
  }

  size_t offset = 0;
  for (size_t i = 0; i < b.free_models.size(); ++i) {
    try {
      pool.free(b.free_models[i], b.free_ids.data() + offset, b.free_counts[i]);
    } catch (const KvError& e) {
      throw KvError(e.code(), "frees[" + std::to_string(i) + "]: " + e.what());
    }
    offset += b.free_counts[i];
  }

  PoolBatchResult r;
  std::unordered_map<ModelId, bool> ran_out;
  for (size_t i = 0; i < b.alloc_models.size(); ++i) {
    r.starts.push_back(static_cast<uint32_t>(r.ids.size()));
    AllocResult a = pool.alloc(b.alloc_models[i], b.alloc_counts[i], &r.ids);
    if (!a.ok) ran_out[b.alloc_models[i]] = true;
    r.allocs.push_back(a);
  }
  r.starts.push_back(static_cast<uint32_t>(r.ids.size()));

  for (size_t i = 0; i < b.live_models.size(); ++i) {
    ModelId m = b.live_models[i];
    uint64_t tokens = b.live_tokens[i];
    if (ran_out.count(m) != 0) {
      tokens = std::min(tokens, pool.live_blocks(m) * pool.layout(m).geometry.tokens_per_block);
    }
    pool.set_live_tokens(m, tokens);
  }
  return r;
}

}  // namespace fineserve::kv
