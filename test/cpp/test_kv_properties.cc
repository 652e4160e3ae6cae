// Property tests of the KvPool contract (kv/kv_pool.h) for all four policies: seeded random op
// sequences checked call by call against the reference model in kv_pool_harness.h, plus targeted
// scenarios for what random ops reach too rarely (a full pool, slab 0, reserves under pressure,
// slab choice, compaction).
//
// A failure names the policy, seed and op index. Rerun one seed with
//   FINESERVE_KV_PROP_SEED=<seed> ./fineserve_core_tests -tc="*random ops on <policy>"
// and scale the search with FINESERVE_KV_PROP_SEEDS=<count> (default keeps ctest fast).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "kv_pool_harness.h"

using namespace fineserve::kv;
using namespace fineserve::kv::testing;

namespace {

void doctest_fail(const std::string& message) { FAIL(message); }

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

ModelOptions options(const std::string& name, const KvGeometry& g, uint64_t reserve = 0, uint64_t partition = 0) {
  ModelOptions o;
  o.name = name;
  o.geometry = g;
  o.reserve_blocks = reserve;
  o.partition_bytes = partition;
  return o;
}

// Adds a model every policy accepts: static gets 1/share_div of the pool as its partition.
bool add_valid(PoolHarness& h, const std::string& name, const KvGeometry& g, uint64_t share_div = 4) {
  uint64_t partition = 0;
  if (h.is_static()) partition = h.pool().pool_bytes() / share_div / kBlockGranule * kBlockGranule;
  return h.add_model(options(name, g, 0, partition));
}

size_t index_of(const PoolHarness& h, const std::string& name) {
  for (size_t i = 0; i < h.num_models(); ++i) {
    if (h.model_at(i).options.name == name) return i;
  }
  FAIL("no model named " << name);
  return 0;
}

// kv-slab: the slab a block lives in, from its id (= offset / 64).
uint64_t slab_of(BlockId id) { return uint64_t{id} * kBlockGranule / kSlab; }

void run_random(const char* policy) {
  const uint64_t seeds = env_u64("FINESERVE_KV_PROP_SEEDS", 64);
  const uint64_t only = env_u64("FINESERVE_KV_PROP_SEED", 0);
  const uint64_t ops = env_u64("FINESERVE_KV_PROP_OPS", 300);
  uint64_t compacts = 0, released = 0, moved = 0;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    if (only && seed != only) continue;
    INFO("policy: " << std::string(policy));
    CAPTURE(seed);
    const uint64_t pool_bytes = kPoolSizes[seed % 4];
    PoolHarness h(pool_config(policy, pool_bytes), doctest_fail);
    SplitMix rng(seed);
    run_random_ops(h, rng, ops);
    h.check_deep();
    compacts += h.compact_calls();
    released += h.compact_released();
    moved += h.compact_moved();
    drain(h, rng);
  }
  // The op mix must reach compaction, and on kv-slab actually release slabs, or its checks are vacuous.
  INFO("policy: " << std::string(policy) << ", compact calls " << compacts << ", slabs released " << released
                  << ", blocks moved " << moved);
  if (!only && seeds >= 16) {
    CHECK(compacts > 0);
    if (std::string(policy) == "kv-slab") {
      CHECK(released > 0);
      CHECK(moved > released);
    }
  }
}

// Fill every model to out-of-memory, free everything, repeat: the pool must come back exactly.
void run_fill_and_empty(const char* policy, uint64_t seed) {
  INFO("policy: " << std::string(policy));
  CAPTURE(seed);
  PoolHarness h(pool_config(policy, 24 * kMiB + 4160), doctest_fail);
  SplitMix rng(seed);
  uint64_t names = 0;
  for (int cycle = 0; cycle < 4; ++cycle) {
    CAPTURE(cycle);
    while (h.num_models() < 1 + static_cast<size_t>(cycle % 3)) {
      const auto& g = valid_geometries();
      REQUIRE(add_valid(h, "f" + std::to_string(names++), g[rng.below(g.size())]));
    }
    std::vector<uint64_t> empty_avail;
    for (size_t i = 0; i < h.num_models(); ++i) empty_avail.push_back(h.available(i));

    // Fill: random bites until nobody can get another block.
    for (int guard = 0;; ++guard) {
      REQUIRE(guard < 100000);
      std::vector<size_t> hungry;
      for (size_t i = 0; i < h.num_models(); ++i) {
        if (h.available(i) > 0) hungry.push_back(i);
      }
      if (hungry.empty()) break;
      size_t i = hungry[rng.below(hungry.size())];
      uint64_t a = h.available(i);
      REQUIRE(h.alloc_at(i, static_cast<uint32_t>(1 + rng.below(std::min<uint64_t>(a, 64)))));
    }
    for (size_t i = 0; i < h.num_models(); ++i) {
      CHECK_FALSE(h.alloc_at(i, 1));
      h.set_tokens_at(i, rng.below(h.model_at(i).capacity_tokens() + 1));
    }
    PoolStats full = h.pool().stats();
    if (h.is_slab() || h.is_unified()) CHECK(full.free_slabs == 0);  // no reserves: every slab/block in use
    if (h.is_static()) {
      for (size_t i = 0; i < h.num_models(); ++i) CHECK(h.model_at(i).live.size() == h.model_at(i).per_unit);
    }

    // Empty, interleaving the models.
    for (int guard = 0; h.total_live() > 0; ++guard) {
      REQUIRE(guard < 100000);
      size_t i = rng.below(h.num_models());
      const auto& m = h.model_at(i);
      if (m.live.empty()) continue;
      h.free_at(i, pick_live(m, rng, 1 + rng.below(std::min<size_t>(48, m.live.size()))));
    }
    h.check_deep();
    PoolStats empty = h.pool().stats();
    if (!h.is_static()) {
      CHECK(empty.held_bytes == 0);
      CHECK(empty.free_slabs == empty.num_slabs);
    }
    for (size_t i = 0; i < h.num_models(); ++i) CHECK(h.available(i) == empty_avail[i]);
    if (h.num_models() > 1) h.remove_model_at(rng.below(h.num_models()));
  }
  drain(h, rng);
}

}  // namespace

TEST_CASE("kv properties: random ops on kv-slab") { run_random("kv-slab"); }
TEST_CASE("kv properties: random ops on static") { run_random("static"); }
TEST_CASE("kv properties: random ops on unified") { run_random("unified"); }
TEST_CASE("kv properties: random ops on paged") { run_random("paged"); }

TEST_CASE("kv properties: full -> empty -> full cycles leak nothing") {
  for (const char* policy : kPolicies) {
    for (uint64_t seed = 1; seed <= 3; ++seed) run_fill_and_empty(policy, seed);
  }
}

TEST_CASE("kv properties: every kind of invalid call is refused and changes nothing") {
  for (const char* policy : kPolicies) {
    INFO("policy: " << std::string(policy));
    PoolHarness h(pool_config(policy, 64 * kMiB), doctest_fail);
    const auto& g = valid_geometries();
    REQUIRE(add_valid(h, "a", g[2]));
    REQUIRE(add_valid(h, "b", g[3]));
    REQUIRE(add_valid(h, "gone", g[4]));
    REQUIRE(h.alloc_at(2, 3));
    h.remove_model_at(2);
    REQUIRE(h.alloc_at(0, 6));
    REQUIRE(h.alloc_at(1, 4));
    const BlockId a0 = h.model_at(0).live[0], a1 = h.model_at(0).live[1];
    const BlockId freed = h.model_at(0).live[5];
    h.free_at(0, {freed});
    const BlockId b0 = h.model_at(1).live[0];
    const ModelId gone = h.removed().back().id;

    for (uint64_t which = 0; which < PoolHarness::kUnknownModelProbes; ++which) {
      h.probe_unknown_model(h.unissued_id(0), which);
      h.probe_unknown_model(gone, which);
    }
    // Each probe returns false only when the ids were all valid, which would make it vacuous.
    CHECK(h.probe_free(0, {freed}));
    CHECK(h.probe_free(0, {a0, a0}));
    CHECK(h.probe_free(0, {a0, a1, a0}));
    CHECK(h.probe_free(0, {a0, freed, a1}));
    CHECK(h.probe_free(0, {UINT32_MAX}));
    CHECK(h.probe_free(0, {a1, static_cast<BlockId>(h.pool().pool_bytes() / kBlockGranule)}));
    if (h.physical()) {
      CHECK(h.probe_free(0, {b0}));  // another model's live block
      CHECK(h.probe_free(0, {a0 + 1}));
      CHECK(h.probe_offset(0, b0));
    } else {
      // Paged ids are per-model indices: the same number can be live in both models.
      CHECK(h.model_at(1).is_live(b0));
    }
    for (BlockId id : h.removed().back().ids) h.probe_free(0, {id});
    CHECK(h.probe_offset(0, freed));
    CHECK(h.probe_offset(0, UINT32_MAX));
    h.set_tokens_at(0, h.model_at(0).capacity_tokens() + 1);
    h.set_tokens_at(1, h.model_at(1).capacity_tokens());
    h.set_tokens_at(1, h.model_at(1).capacity_tokens() + 16);

    uint64_t part = h.is_static() ? 4 * kMiB : 0;
    CHECK_FALSE(h.add_model(options("", g[0], 0, part)));
    CHECK_FALSE(h.add_model(options("a", g[0], 0, part)));
    for (const KvGeometry& bad : invalid_geometries()) CHECK_FALSE(h.add_model(options("bad", bad, 0, part)));
    // The name of a removed model is free again.
    CHECK(h.add_model(options("gone", g[1], 0, part)));
    if (h.is_slab()) {
      for (const KvGeometry& big : oversize_geometries()) CHECK_FALSE(h.add_model(options("big", big)));
      uint64_t bps = kSlab / make_layout(g[0]).block_bytes;
      CHECK_FALSE(h.add_model(options("greedy", g[0], h.num_units() * bps + 1)));
    }
    if (h.is_unified()) CHECK_FALSE(h.add_model(options("big", oversize_geometries()[0])));
    if (h.is_static()) {
      uint64_t bb = make_layout(g[0]).block_bytes;
      CHECK_FALSE(h.add_model(options("nopart", g[0], 0, 0)));
      CHECK_FALSE(h.add_model(options("tiny", g[0], 0, bb - kBlockGranule)));
      CHECK_FALSE(h.add_model(options("huge", g[0], 0, h.pool().pool_bytes() + bb)));
    }
    h.check_deep();
    SplitMix rng(7);
    drain(h, rng);
  }
}

TEST_CASE("kv-slab: slab 0 is an ordinary slab") {
  const auto& g = valid_geometries();
  {
    // The very first block is block 0 of slab 0: id 0, offset 0. Freeing it releases slab 0 (id 0
    // is not mistaken for "no slab"), and the pool works on.
    PoolHarness h(pool_config("kv-slab", 64 * kMiB), doctest_fail);
    REQUIRE(h.add_model(options("a", g[2])));
    REQUIRE(h.alloc_at(0, 1));
    const ModelId a = h.model_at(0).id;
    CHECK(h.model_at(0).live[0] == 0);
    CHECK(h.pool().block_offset(a, 0) == 0);
    CHECK(h.pool().stats().models[0].slabs_held == 1);
    h.free_at(0, {0});
    CHECK(h.pool().stats().free_slabs == h.num_units());
    CHECK(h.probe_free(0, {0}));
    REQUIRE(h.alloc_at(0, 1));
    REQUIRE(h.alloc_at(0, 25));
    SplitMix rng(1);
    drain(h, rng);
  }
  PoolHarness h(pool_config("kv-slab", 64 * kMiB), doctest_fail);
  REQUIRE(h.add_model(options("a", g[2])));  // 10 blocks per slab
  const uint64_t bps = h.model_at(0).per_unit;
  REQUIRE(bps == 10);

  // One block, then bps more: fullest-first fills slab 0 before spilling into another slab.
  REQUIRE(h.alloc_at(0, 1));
  REQUIRE(h.alloc_at(0, static_cast<uint32_t>(bps)));
  std::vector<BlockId> in0;
  for (BlockId id : h.model_at(0).live) {
    if (slab_of(id) == 0) in0.push_back(id);
  }
  REQUIRE(in0.size() == bps);
  // Thin slab 0 out: as the fullest partial slab it must get the next block.
  h.free_at(0, {in0[0], in0[1], in0[2]});
  REQUIRE(h.alloc_at(0, 1));
  CHECK(slab_of(h.model_at(0).live.back()) == 0);

  // Empty slab 0 completely: it is released while the other slab stays held.
  std::vector<BlockId> rest;
  for (BlockId id : h.model_at(0).live) {
    if (slab_of(id) == 0) rest.push_back(id);
  }
  h.free_at(0, rest);
  CHECK(h.pool().stats().models[0].slabs_held == 1);
  CHECK(h.pool().stats().free_slabs == h.num_units() - 1);

  // Another geometry takes every free slab, slab 0 included; a's stale id 0 is now foreign.
  REQUIRE(h.add_model(options("b", g[4])));
  REQUIRE(h.alloc_at(1, static_cast<uint32_t>(h.available(1))));
  bool b_in_slab0 = false;
  for (BlockId id : h.model_at(1).live) b_in_slab0 |= slab_of(id) == 0;
  CHECK(b_in_slab0);
  CHECK(h.probe_free(0, {0}));
  CHECK(h.probe_offset(0, 0));

  // b gives it all back; a can get slab 0 again.
  h.free_at(1, h.model_at(1).live);
  REQUIRE(h.alloc_at(0, static_cast<uint32_t>(h.available(0))));
  bool a_in_slab0 = false;
  for (BlockId id : h.model_at(0).live) a_in_slab0 |= slab_of(id) == 0;
  CHECK(a_in_slab0);
  SplitMix rng(1);
  drain(h, rng);
}

TEST_CASE("kv-slab: the fullest partial slab is used first") {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    CAPTURE(seed);
    SplitMix rng(seed);
    PoolHarness h(pool_config("kv-slab", 64 * kMiB), doctest_fail);
    const auto& g = valid_geometries();
    REQUIRE(h.add_model(options("a", g[2 + seed % 3])));  // 10, 17 or 151 blocks per slab
    const uint64_t bps = h.model_at(0).per_unit;
    REQUIRE(h.alloc_at(0, static_cast<uint32_t>(6 * bps)));
    // Thin every slab (slab 0 included) to a random partial fill.
    std::map<uint64_t, uint64_t> slabs;
    for (BlockId id : h.model_at(0).live) slabs[slab_of(id)]++;
    REQUIRE(slabs.size() == 6);
    REQUIRE(slabs.count(0) == 1);
    for (auto& [slab, count] : slabs) {
      std::vector<BlockId> ids;
      for (BlockId id : h.model_at(0).live) {
        if (slab_of(id) == slab) ids.push_back(id);
      }
      REQUIRE(ids.size() == bps);
      ids.resize(1 + rng.below(bps - 1));
      h.free_at(0, ids);
    }
    for (int k = 0; k < 40; ++k) {
      std::map<uint64_t, uint64_t> used;
      for (BlockId id : h.model_at(0).live) used[slab_of(id)]++;
      uint64_t fullest = 0;
      for (auto& [slab, n] : used) {
        if (n < bps) fullest = std::max(fullest, n);
      }
      REQUIRE(h.alloc_at(0, 1));
      uint64_t got = slab_of(h.model_at(0).live.back());
      CAPTURE(k);
      CHECK(used[got] == fullest);
      // Occasionally free one to reshuffle the order.
      if (rng.below(4) == 0) h.free_at(0, pick_live(h.model_at(0), rng, 1));
    }
    drain(h, rng);
  }
}

TEST_CASE("kv-slab: a reserve holds against a greedy neighbour") {
  PoolHarness h(pool_config("kv-slab", 64 * kMiB), doctest_fail);  // 32 slabs
  REQUIRE(h.num_units() == 32);
  const auto& g = valid_geometries();
  REQUIRE(h.add_model(options("reserved", g[2], 35)));  // 10 per slab: 4 slabs promised
  REQUIRE(h.add_model(options("greedy", g[4])));        // 151 per slab
  const size_t r = index_of(h, "reserved"), gr = index_of(h, "greedy");
  CHECK(h.available(gr) == (32 - 4) * 151);
  CHECK(h.available(r) == 32 * 10);

  REQUIRE(h.alloc_at(gr, static_cast<uint32_t>(h.available(gr))));
  CHECK_FALSE(h.alloc_at(gr, 1));
  for (int k = 0; k < 35; ++k) REQUIRE(h.alloc_at(r, 1));
  // Its four slabs have 5 slots left, and nothing more.
  CHECK(h.available(r) == 5);
  REQUIRE(h.alloc_at(r, 5));
  CHECK_FALSE(h.alloc_at(r, 1));

  // No free slab: a new reserve cannot be guaranteed.
  CHECK_FALSE(h.add_model(options("late", g[3], 1)));
  // One slab freed by the greedy model can back it.
  std::vector<BlockId> slab_ids;
  uint64_t victim = slab_of(h.model_at(gr).live[0]);
  for (BlockId id : h.model_at(gr).live) {
    if (slab_of(id) == victim) slab_ids.push_back(id);
  }
  h.free_at(gr, slab_ids);
  REQUIRE(h.add_model(options("late", g[3], 1)));
  const size_t late = index_of(h, "late");
  CHECK(h.available(gr) == 0);  // the freed slab is promised to "late"

  // The reserved model gives everything back: its slabs stay promised to it.
  h.free_at(r, h.model_at(r).live);
  CHECK(h.pool().stats().free_slabs == 5);
  CHECK(h.available(gr) == 0);
  CHECK_FALSE(h.alloc_at(gr, 1));
  for (int k = 0; k < 35; ++k) REQUIRE(h.alloc_at(r, 1));
  REQUIRE(h.alloc_at(late, 1));

  // Removing a reserved model releases its promise.
  h.free_at(r, h.model_at(r).live);
  h.remove_model_at(index_of(h, "reserved"));
  CHECK(h.available(index_of(h, "greedy")) == 4 * 151);
  SplitMix rng(3);
  drain(h, rng);

  // A reserve of the whole pool is fine once; after that nobody else can get or reserve anything.
  REQUIRE(h.add_model(options("all", g[2], 32 * 10 + 1)) == false);
  REQUIRE(h.add_model(options("all", g[2], 32 * 10)));
  REQUIRE(h.add_model(options("other", g[4])));
  CHECK(h.available(index_of(h, "other")) == 0);
  CHECK_FALSE(h.add_model(options("more", g[4], 1)));
  REQUIRE(h.alloc_at(index_of(h, "all"), 32 * 10));
  drain(h, rng);
}

TEST_CASE("kv properties: a reserved model keeps its reserve under random pressure") {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    CAPTURE(seed);
    SplitMix rng(seed);
    PoolHarness h(pool_config("kv-slab", 24 * kMiB), doctest_fail);  // 12 slabs
    const auto& g = valid_geometries();
    REQUIRE(h.add_model(options("r1", g[2 + rng.below(3)], 1 + rng.below(30))));
    REQUIRE(h.add_model(options("r2", g[1 + rng.below(4)], 1 + rng.below(8))));
    REQUIRE(h.add_model(options("hog", g[rng.below(5)])));
    for (int k = 0; k < 400; ++k) {
      size_t i = rng.below(3);
      const auto& m = h.model_at(i);
      if (i == 2 || rng.below(3)) {
        uint64_t a = h.available(i);
        // The hog always asks for everything; the reserved models nibble.
        h.alloc_at(i, static_cast<uint32_t>(i == 2 ? std::max<uint64_t>(a, 1) + rng.below(2) : 1 + rng.below(4)));
      } else if (!m.live.empty()) {
        h.free_at(i, pick_live(m, rng, 1 + rng.below(m.live.size())));
      }
    }
    drain(h, rng);
  }
}

TEST_CASE("kv-slab: removing a reserved model that still holds blocks returns its whole reserve") {
  PoolHarness h(pool_config("kv-slab", 64 * kMiB), doctest_fail);  // 32 slabs
  const auto& g = valid_geometries();
  REQUIRE(h.add_model(options("r", g[2], 35)));  // 4 slabs promised, 10 blocks each
  REQUIRE(h.alloc_at(0, 20));                    // 2 of them taken
  h.remove_model_at(0);
  // Nothing is held or promised any more: another model can reserve the entire pool.
  REQUIRE(h.add_model(options("all", g[4])));
  CHECK(h.available(0) == 32 * 151);
  CHECK(h.add_model(options("whole", g[2], 32 * 10)));
  SplitMix rng(5);
  drain(h, rng);
}

// Slab used counts for model `i` (kv-slab), ascending by slab.
std::vector<uint32_t> used_counts(const PoolHarness& h, size_t i) {
  std::vector<uint32_t> v;
  for (auto& [slab, n] : h.model_at(i).units) v.push_back(n);
  return v;
}

// Allocates `counts.size()` whole slabs for model i, then thins slab k down to counts[k] live blocks.
void shape_slabs(PoolHarness& h, size_t i, const std::vector<uint32_t>& counts) {
  const uint64_t bps = h.model_at(i).per_unit;
  std::map<uint64_t, uint32_t> before = h.model_at(i).units;
  REQUIRE(h.alloc_at(i, static_cast<uint32_t>(counts.size() * bps)));
  std::map<uint64_t, std::vector<BlockId>> fresh;
  for (BlockId id : h.model_at(i).live) {
    if (!before.count(slab_of(id))) fresh[slab_of(id)].push_back(id);
  }
  REQUIRE(fresh.size() == counts.size());
  size_t k = 0;
  std::vector<BlockId> drop;
  for (auto& [slab, ids] : fresh) {
    REQUIRE(ids.size() == bps);
    drop.insert(drop.end(), ids.begin() + counts[k++], ids.end());
  }
  h.free_at(i, drop);
}

TEST_CASE("kv-slab: compaction releases exactly the slabs the rules allow") {
  PoolHarness h(pool_config("kv-slab", 64 * kMiB), doctest_fail);  // 32 slabs
  const auto& g = valid_geometries();
  REQUIRE(h.add_model(options("a", g[2])));  // 10 blocks per slab
  REQUIRE(h.add_model(options("b", g[4])));  // 151 per slab, a bystander
  REQUIRE(h.alloc_at(1, 200));
  shape_slabs(h, 0, {9, 7, 5, 3, 2, 1});  // 27 live in 6 slabs: 33 free slots, room to empty 3
  CHECK(used_counts(h, 0) == std::vector<uint32_t>{9, 7, 5, 3, 2, 1});
  const uint64_t free0 = h.pool().stats().free_slabs;

  CHECK(h.compact_at(0, 0) == 0);  // max_slabs 0: nothing
  CHECK(h.compact_at(1, 5) == 0);  // b: 2 slabs, 151 + 49 live: the partial one cannot be emptied
  // One slab: the single block of the emptiest slab goes into the 9-block one.
  CHECK(h.compact_at(0, 1, 2) == 1);
  CHECK(h.compact_moved() == 1);
  // No limit: the 2-block slab (into the 7), then the 3-block one (9 -> 10, 5 -> 7); the 7-block
  // slab left cannot fit into 3 free slots.
  CHECK(h.compact_at(0, UINT64_MAX) == 2);
  CHECK(h.compact_moved() == 6);
  std::vector<uint32_t> now = used_counts(h, 0);
  std::sort(now.begin(), now.end());
  CHECK(now == std::vector<uint32_t>{7, 10, 10});
  CHECK(h.pool().stats().free_slabs == free0 + 3);
  CHECK(h.compact_at(0, UINT64_MAX) == 0);

  // The released slabs are ordinary free slabs: b can take them, and the moved blocks free normally.
  REQUIRE(h.alloc_at(1, static_cast<uint32_t>(h.available(1))));
  SplitMix rng(11);
  for (int k = 0; k < 3; ++k) h.free_at(0, pick_live(h.model_at(0), rng, 4));
  drain(h, rng);
}

TEST_CASE("kv-slab: compaction below a reserve keeps the released slabs promised") {
  PoolHarness h(pool_config("kv-slab", 24 * kMiB), doctest_fail);  // 12 slabs
  const auto& g = valid_geometries();
  REQUIRE(h.add_model(options("r", g[2], 40)));  // 4 slabs promised
  REQUIRE(h.add_model(options("hog", g[3])));
  shape_slabs(h, 0, {1, 1, 2, 1});
  REQUIRE(h.alloc_at(1, static_cast<uint32_t>(h.available(1))));  // everything not promised to r
  CHECK(h.available(1) == 0);
  // All five blocks fit one slab: three slabs are released, and stay r's to claim.
  CHECK(h.compact_at(0, UINT64_MAX, 1) == 3);
  CHECK(used_counts(h, 0) == std::vector<uint32_t>{5});
  CHECK(h.pool().stats().free_slabs == 3);
  CHECK(h.available(1) == 0);
  CHECK_FALSE(h.alloc_at(1, 1));
  REQUIRE(h.alloc_at(0, static_cast<uint32_t>(h.available(0))));
  CHECK(h.model_at(0).units.size() == 4);
  SplitMix rng(4);
  drain(h, rng);
}

TEST_CASE("kv properties: compact on the baselines moves nothing") {
  for (const char* policy : {"static", "unified", "paged"}) {
    INFO("policy: " << std::string(policy));
    PoolHarness h(pool_config(policy, 64 * kMiB), doctest_fail);
    const auto& g = valid_geometries();
    REQUIRE(add_valid(h, "a", g[2]));
    REQUIRE(add_valid(h, "b", g[4]));
    REQUIRE(h.alloc_at(0, 8));
    REQUIRE(h.alloc_at(1, 12));
    SplitMix rng(9);
    h.free_at(0, pick_live(h.model_at(0), rng, 5));
    for (uint64_t max_slabs : {uint64_t{0}, uint64_t{1}, uint64_t{3}, UINT64_MAX}) {
      CHECK(h.compact_at(0, max_slabs, max_slabs % 2) == 0);
      CHECK(h.compact_at(1, max_slabs) == 0);
    }
    CHECK(h.compact_moved() == 0);
    h.remove_model_at(1);
    h.probe_unknown_model(h.removed().back().id, 7);
    h.probe_unknown_model(h.unissued_id(0), 7);
    drain(h, rng);
  }
}

TEST_CASE("kv-slab: a slab emptied by compaction comes back clean") {
  PoolHarness h(pool_config("kv-slab", 64 * kMiB), doctest_fail);
  const auto& g = valid_geometries();
  REQUIRE(h.add_model(options("a", g[2])));  // 10 blocks per slab
  REQUIRE(h.alloc_at(0, 20));                // slabs 0 and 1, full
  std::vector<BlockId> s0, s1;
  for (BlockId id : h.model_at(0).live) (slab_of(id) == 0 ? s0 : s1).push_back(id);
  std::sort(s0.begin(), s0.end());
  std::sort(s1.begin(), s1.end());
  REQUIRE(s0.size() == 10);
  REQUIRE(s1.size() == 10);
  // Slab 0 keeps 9, slab 1 only its block at local index 5, which compaction moves into slab 0.
  const BlockId moved = s1[5];
  s1.erase(s1.begin() + 5);
  s1.push_back(s0[0]);
  h.free_at(0, s1);
  CHECK(h.compact_at(0, 1) == 1);
  CHECK(h.model_at(0).is_live(s0[0]));
  CHECK_FALSE(h.model_at(0).is_live(moved));
  // Slab 0 is full, so the next block comes from a freshly carved slab: the one just released.
  REQUIRE(h.alloc_at(0, 1));
  CHECK(slab_of(h.model_at(0).live.back()) == 1);
  // The moved-from slot of that slab was never handed out again: it is a free slot, not a block.
  CHECK(h.probe_offset(0, moved));
  CHECK(h.probe_free(0, {moved}));
  SplitMix rng(2);
  drain(h, rng);
}
