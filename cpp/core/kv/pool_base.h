// Bookkeeping every KvPool policy shares: the model registry (ids, names, layouts), counters,
// live-token accounting and high-water marks. Policies derive from it and keep only their own
// memory logic.
#pragma once

#include <vector>

#include "kv/kv_pool.h"

namespace fineserve::kv {

class PoolBase : public KvPool {
 public:
  explicit PoolBase(uint64_t pool_bytes);

  uint64_t pool_bytes() const override { return pool_bytes_; }
  void set_live_tokens(ModelId model, uint64_t tokens) override;
  const KvLayout& layout(ModelId model) const override;
  uint64_t live_blocks(ModelId model) const override { return this->model(model).live_blocks; }
  // Policies without slabs have nothing to compact; the id is still checked like everywhere else.
  uint64_t compact(ModelId model, uint64_t, std::vector<BlockMove>*) override {
    this->model(model);
    return 0;
  }

 protected:
  struct Model {
    bool active = false;
    ModelOptions options;
    KvLayout layout{};
    uint64_t live_blocks = 0;
    uint64_t live_tokens = 0;
    ModelStats counters;  // the call counters and peaks; the rest is filled by stats()
  };

  // Validates name and geometry (KvError InvalidGeometry / DuplicateModel) and records the model.
  ModelId insert_model(const ModelOptions& options);
  void erase_model(ModelId model);
  Model& model(ModelId id);              // KvError UnknownModel when not active
  const Model& model(ModelId id) const;
  const std::vector<Model>& models() const { return models_; }

  // Call after every successful alloc with the model's and the pool's held bytes after it, after
  // every refused alloc, and after every successful free (which clamps live tokens).
  void record_alloc(Model& m, uint32_t n, uint64_t model_held, uint64_t pool_held);
  void record_oom(Model& m);
  void record_free(Model& m, size_t n);

  // Fills the registry-derived fields of a model's stats (everything but held/external/tail,
  // blocks_per_slab, slabs_held and block_bytes, which the policy sets), and adds the model's
  // totals into `pool` once the policy has filled them.
  ModelStats base_stats(ModelId id) const;
  void finish_pool_stats(PoolStats* pool) const;

  // KvError(ForeignBlock / DoubleFree) with a message naming the model and the id.
  [[noreturn]] void throw_bad_id(KvErrc code, const Model& m, BlockId id, const char* why) const;

  // A block's state byte while a free call is checked: 1 live, 2 claimed by this call.
  static constexpr uint8_t kLive = 1, kClaimed = 2;
  // DoubleFree unless `state` is kLive; the message says whether the id repeats within the call.
  void require_live(const Model& m, BlockId id, uint8_t state) const;

  // A free is all or nothing: every id is checked before any is released. claim(id) validates
  // one id (throwing KvError), marks it claimed so a repeat in the same call is caught, and
  // returns the policy's key for it; if a later id is bad, unclaim(key) undoes every mark made.
  template <typename Key, typename Claim, typename Unclaim>
  static void claim_all(const BlockId* ids, size_t n, std::vector<Key>* keys, Claim&& claim,
                        Unclaim&& unclaim) {
    keys->clear();
    for (size_t i = 0; i < n; ++i) {
      try {
        keys->push_back(claim(ids[i]));
      } catch (...) {
        for (const Key& k : *keys) unclaim(k);
        throw;
      }
    }
  }

 private:
  uint64_t pool_bytes_;
  std::vector<Model> models_;
  uint64_t peak_held_bytes_ = 0;
  uint64_t peak_live_token_bytes_ = 0;
  uint64_t live_token_bytes_ = 0;
};

}  // namespace fineserve::kv
