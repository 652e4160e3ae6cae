// The KV Slab's own rules: slab sizing and the tail bound, mixed-depth models in one pool,
// fullest-partial-first, emptied slabs going back to any geometry, reserves, error codes, and the
// memory itself (every live block's bytes are its own).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <random>
#include <set>
#include <vector>

#include "cuda_devices.h"
#include "kv/kv_slab.h"

using namespace fineserve::kv;

namespace {

constexpr uint64_t MiB = 1ull << 20;

ModelOptions model(const char* name, KvGeometry g, uint64_t reserve = 0) {
  ModelOptions o;
  o.name = name;
  o.geometry = g;
  o.reserve_blocks = reserve;
  return o;
}

// Small geometries so tests run on small pools. f16 block: 16 tok * 2 layers * 2 * 2 heads * 64 B
KvGeometry tiny(uint32_t layers = 2, KvFormat f = KvFormat::F16) { return {16, layers, 2, 32, f, 0}; }

uint32_t slab_of(const KvSlab& p, BlockId id) { return static_cast<uint32_t>(id * kBlockGranule / p.slab_bytes()); }

KvErrc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const KvError& e) {
    return e.code();
  }
  FAIL("expected a KvError");
  return KvErrc::InvalidArgument;
}

}  // namespace

TEST_CASE("automatic slab size: a power of two from 2 to 64 MiB, about 256 slabs") {
  CHECK(KvSlab::auto_slab_bytes(1 * MiB) == 1 * MiB);
  CHECK(KvSlab::auto_slab_bytes(64 * MiB) == 2 * MiB);
  CHECK(KvSlab::auto_slab_bytes(2048 * MiB) == 8 * MiB);
  CHECK(KvSlab::auto_slab_bytes(80ull * 1024 * MiB) == 64 * MiB);
}

TEST_CASE("bad pool options name the field") {
  CHECK(code_of([] { KvSlab({0, 0, 0.125, "none"}); }) == KvErrc::InvalidArgument);
  CHECK(code_of([] { KvSlab({64 * MiB, 100, 0.125, "none"}); }) == KvErrc::InvalidArgument);
  CHECK(code_of([] { KvSlab({64 * MiB, 128 * MiB, 0.125, "none"}); }) == KvErrc::InvalidArgument);
  CHECK(code_of([] { KvSlab({64 * MiB, 2 * MiB, 1.5, "none"}); }) == KvErrc::InvalidArgument);
  try {
    KvSlab({64 * MiB, 100, 0.125, "none"});
  } catch (const KvError& e) {
    CHECK(std::string(e.what()).find("slabBytes = 100") == 0);
  }
}

TEST_CASE("models of different depth and KV format share one pool of slabs") {
  // Llama-3.1-8B-like fp16 KV (2 MiB blocks) and a 70B-like model (80 layers, 5 MiB blocks).
  KvSlab pool({1024 * MiB, 64 * MiB, 0.125, "none"});
  ModelId m8 = pool.add_model(model("8b-fp16", {16, 32, 8, 128, KvFormat::F16, 0}));
  ModelId m70 = pool.add_model(model("70b-fp8", {16, 80, 8, 128, KvFormat::Fp8E4M3, 0}));
  ModelId q4 = pool.add_model(model("8b-int4", {16, 32, 8, 128, KvFormat::Int4, 1}));
  std::vector<BlockId> a, b, c;
  REQUIRE(pool.alloc(m8, 40, &a).ok);   // 32 per slab: 2 slabs
  REQUIRE(pool.alloc(m70, 30, &b).ok);  // 2.66 MiB blocks (K references included), 24 per slab: 2 slabs
  REQUIRE(pool.alloc(q4, 300, &c).ok);  // 644 KiB blocks (K's per-channel params), 101 per slab: 3 slabs
  PoolStats s = pool.stats();
  CHECK(s.num_slabs == 16);
  CHECK(s.free_slabs == 16 - 2 - 2 - 3);
  CHECK(s.models[0].blocks_per_slab == 32);
  CHECK(s.models[1].blocks_per_slab == 24);
  CHECK(s.models[2].blocks_per_slab == 101);
  // Freeing every 8B block gives its slabs back and the 70B model can use them.
  pool.free(m8, a.data(), a.size());
  CHECK(pool.stats().free_slabs == 16 - 2 - 3);
  std::vector<BlockId> more;
  REQUIRE(pool.available_blocks(m70) == (2 * 24 - 30) + 11 * 24);
  REQUIRE(pool.alloc(m70, (2 * 24 - 30) + 11 * 24, &more).ok);  // fills what is left
  CHECK(pool.available_blocks(m70) == 0);
  CHECK_FALSE(pool.alloc(m70, 1, &more).ok);
}

TEST_CASE("geometries whose tail would waste too much of a slab are rejected") {
  KvSlab pool({256 * MiB, 8 * MiB, 0.125, "none"});
  // 80 layers fp16 at 16 tokens: 5 MiB blocks leave 3 MiB (37.5 %) of an 8 MiB slab.
  CHECK(code_of([&] { pool.add_model(model("70b", {16, 80, 8, 128, KvFormat::F16, 0})); }) ==
        KvErrc::OversizeGeometry);
  // 8 tokens per block: 2.5 MiB, 3 per slab, tail 0.5 MiB = 6.25 %: accepted.
  CHECK_NOTHROW(pool.add_model(model("70b", {8, 80, 8, 128, KvFormat::F16, 0})));
  // Larger than a slab.
  CHECK(code_of([&] { pool.add_model(model("huge", {64, 80, 8, 128, KvFormat::F16, 0})); }) ==
        KvErrc::OversizeGeometry);
  CHECK(pool.stats().models.size() == 1);
}

TEST_CASE("the fullest partial slab is used first") {
  KvSlab pool({16 * MiB, 1 * MiB, 0.125, "none"});
  ModelId m = pool.add_model(model("m", tiny()));
  uint64_t bps = pool.stats().models[0].blocks_per_slab;
  REQUIRE(bps >= 8);
  std::vector<BlockId> ids;
  REQUIRE(pool.alloc(m, static_cast<uint32_t>(3 * bps), &ids).ok);  // slabs 0, 1, 2 full
  // Leave slab 0 with 2 free blocks, slab 1 with 5, slab 2 with 1: slab 2 is the fullest.
  std::vector<BlockId> drop;
  auto take = [&](uint32_t slab, int count) {
    for (BlockId id : ids)
      if (slab_of(pool, id) == slab && count > 0 &&
          std::find(drop.begin(), drop.end(), id) == drop.end()) {
        drop.push_back(id);
        --count;
      }
  };
  take(0, 2);
  take(1, 5);
  take(2, 1);
  pool.free(m, drop.data(), drop.size());
  std::vector<uint32_t> order;
  for (int i = 0; i < 8; ++i) {
    std::vector<BlockId> one;
    REQUIRE(pool.alloc(m, 1, &one).ok);
    order.push_back(slab_of(pool, one[0]));
  }
  CHECK(order == std::vector<uint32_t>{2, 0, 0, 1, 1, 1, 1, 1});
  CHECK(pool.stats().free_slabs == pool.stats().num_slabs - 3);
}

TEST_CASE("slab 0 is an ordinary slab, and an emptied slab goes to any geometry") {
  KvSlab pool({4 * MiB, 1 * MiB, 0.125, "none"});
  ModelId a = pool.add_model(model("a", tiny(2)));
  ModelId b = pool.add_model(model("b", tiny(3, KvFormat::Fp8E4M3)));
  std::vector<BlockId> x;
  REQUIRE(pool.alloc(a, 1, &x).ok);
  CHECK(x[0] == 0);  // first block of slab 0, offset 0
  CHECK(pool.block_offset(a, x[0]) == 0);
  pool.free(a, x.data(), 1);
  CHECK(pool.stats().free_slabs == 4);
  std::vector<BlockId> y;
  REQUIRE(pool.alloc(b, 1, &y).ok);
  CHECK(slab_of(pool, y[0]) == 0);  // slab 0 reused by the other geometry
  x.clear();
  REQUIRE(pool.alloc(a, 1, &x).ok);
  CHECK(slab_of(pool, x[0]) != 0);
}

TEST_CASE("a reserve is kept for its model whatever the others do") {
  KvSlab pool({8 * MiB, 1 * MiB, 0.125, "none"});
  ModelId small = pool.add_model(model("small", tiny(), 20));
  uint64_t bps = pool.stats().models[0].blocks_per_slab;
  uint64_t reserved_slabs = (20 + bps - 1) / bps;
  ModelId greedy = pool.add_model(model("greedy", tiny(3)));
  uint64_t greedy_bps = pool.stats().models[1].blocks_per_slab;
  CHECK(pool.available_blocks(greedy) == (8 - reserved_slabs) * greedy_bps);
  std::vector<BlockId> g;
  CHECK_FALSE(pool.alloc(greedy, static_cast<uint32_t>((8 - reserved_slabs) * greedy_bps + 1), &g).ok);
  REQUIRE(pool.alloc(greedy, static_cast<uint32_t>((8 - reserved_slabs) * greedy_bps), &g).ok);
  std::vector<BlockId> s;
  REQUIRE(pool.alloc(small, 20, &s).ok);
  // Beyond the reserve the small model competes like anyone else: what is left is its slab rest.
  CHECK(pool.available_blocks(small) == reserved_slabs * bps - 20);
  // A reserve that cannot be guaranteed is refused and changes nothing.
  CHECK(code_of([&] { pool.add_model(model("late", tiny(), 1)); }) == KvErrc::ReserveUnavailable);
  CHECK(pool.stats().models.size() == 2);
}

TEST_CASE("bad frees and unknown models throw typed errors and change nothing") {
  KvSlab pool({8 * MiB, 1 * MiB, 0.125, "none"});
  ModelId a = pool.add_model(model("a", tiny(2)));
  ModelId b = pool.add_model(model("b", tiny(4)));
  std::vector<BlockId> x, y;
  REQUIRE(pool.alloc(a, 3, &x).ok);
  REQUIRE(pool.alloc(b, 2, &y).ok);
  PoolStats before = pool.stats();
  auto same = [&] {
    PoolStats now = pool.stats();
    CHECK(now.free_slabs == before.free_slabs);
    CHECK(now.models[0].live_blocks == before.models[0].live_blocks);
    CHECK(now.models[1].live_blocks == before.models[1].live_blocks);
  };
  BlockId twice[] = {x[0], x[0]};
  CHECK(code_of([&] { pool.free(a, twice, 2); }) == KvErrc::DoubleFree);
  same();
  BlockId other[] = {x[1], y[0]};
  CHECK(code_of([&] { pool.free(a, other, 2); }) == KvErrc::ForeignBlock);
  same();
  BlockId outside[] = {0xFFFFFFF0u};
  CHECK(code_of([&] { pool.free(a, outside, 1); }) == KvErrc::ForeignBlock);
  BlockId misaligned[] = {x[0] + 1};
  CHECK(code_of([&] { pool.free(a, misaligned, 1); }) == KvErrc::ForeignBlock);
  CHECK(code_of([&] { pool.free(7, x.data(), 1); }) == KvErrc::UnknownModel);
  CHECK(code_of([&] { pool.alloc(7, 1, &x); }) == KvErrc::UnknownModel);
  CHECK(code_of([&] { pool.add_model(model("a", tiny())); }) == KvErrc::DuplicateModel);
  CHECK(code_of([&] { pool.add_model(model("z", {16, 0, 2, 32, KvFormat::F16, 0})); }) == KvErrc::InvalidGeometry);
  same();
  // A freed block whose slab still holds live blocks is a double free.
  pool.free(a, &x[2], 1);
  CHECK(code_of([&] { pool.free(a, &x[2], 1); }) == KvErrc::DoubleFree);
  CHECK(code_of([&] { pool.block_offset(a, x[2]); }) == KvErrc::DoubleFree);
  // After removal the model's ids are unknown, and its slabs are free.
  pool.remove_model(a);
  CHECK(code_of([&] { pool.free(a, x.data(), 1); }) == KvErrc::UnknownModel);
  CHECK(pool.stats().free_slabs == pool.stats().num_slabs - 1);
}

TEST_CASE("live tokens drive the internal fragmentation, and accounting is exact") {
  KvSlab pool({8 * MiB, 1 * MiB, 0.125, "none"});
  ModelId a = pool.add_model(model("a", {16, 2, 2, 24, KvFormat::Int4, 2}));
  std::vector<BlockId> x;
  REQUIRE(pool.alloc(a, 5, &x).ok);
  pool.set_live_tokens(a, 70);
  CHECK(code_of([&] { pool.set_live_tokens(a, 81); }) == KvErrc::InvalidArgument);
  ModelStats m = pool.stats().models[0];
  KvLayout l = pool.layout(a);
  CHECK(m.live_token_bytes == 70 * l.token_bytes);
  CHECK(m.internal_bytes == 5 * l.block_bytes - 70 * l.token_bytes);
  CHECK(m.held_bytes == m.live_token_bytes + m.internal_bytes + m.external_bytes + m.tail_bytes);
  CHECK(m.tail_bytes == MiB - m.blocks_per_slab * l.block_bytes);
  PoolStats s = pool.stats();
  CHECK(s.pool_bytes == s.free_bytes + s.unusable_bytes + s.held_bytes);
  // Freeing blocks drops the tokens they held.
  pool.free(a, x.data(), 2);
  CHECK(pool.stats().models[0].live_tokens == 48);
  CHECK(pool.stats().peak_live_token_bytes == 70 * l.token_bytes);
}

TEST_CASE("host memory: every live block's bytes belong to it alone") {
  KvSlab pool({6 * MiB, 2 * MiB, 0.125, "host"});
  REQUIRE(pool.base() != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(pool.base()) % (2 * MiB) == 0);
  ModelId a = pool.add_model(model("a", {16, 3, 2, 64, KvFormat::F16, 0}));
  ModelId b = pool.add_model(model("b", {8, 5, 1, 128, KvFormat::Int8, 4}));
  std::vector<BlockId> xa, xb;
  REQUIRE(pool.alloc(a, 20, &xa).ok);
  REQUIRE(pool.alloc(b, 30, &xb).ok);
  auto fill = [&](ModelId m, const std::vector<BlockId>& ids, uint8_t tag) {
    const KvLayout& l = pool.layout(m);
    for (size_t i = 0; i < ids.size(); ++i) {
      uint8_t* block = pool.base() + pool.block_offset(m, ids[i]);
      std::memset(block, tag + static_cast<uint8_t>(i), l.block_bytes);
    }
  };
  fill(a, xa, 1);
  fill(b, xb, 101);
  auto check = [&](ModelId m, const std::vector<BlockId>& ids, uint8_t tag) {
    const KvLayout& l = pool.layout(m);
    int bad = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      const uint8_t* block = pool.base() + pool.block_offset(m, ids[i]);
      for (uint64_t k = 0; k < l.block_bytes; ++k) bad += block[k] != static_cast<uint8_t>(tag + i);
      CHECK(pool.block_offset(m, ids[i]) + l.block_bytes <= pool.pool_bytes());
    }
    CHECK(bad == 0);
  };
  check(a, xa, 1);
  check(b, xb, 101);
  std::set<BlockId> unique(xa.begin(), xa.end());
  unique.insert(xb.begin(), xb.end());
  CHECK(unique.size() == xa.size() + xb.size());
}

TEST_CASE("device memory: allocated on a GPU, refused with the reason without one") {
  bool gpu = fineserve::query_cuda().available;
  KvSlabOptions o{64 * MiB, 2 * MiB, 0.125, "cuda:0"};
  if (gpu) {
    KvSlab pool(o);
    CHECK(pool.base() != nullptr);
    CHECK(pool.memory() == "cuda:0");
  } else {
    try {
      KvSlab pool(o);
      FAIL("expected a KvError without a GPU");
    } catch (const KvError& e) {
      CHECK(e.code() == KvErrc::InvalidArgument);
      std::string what = e.what();
      CHECK(what.find("memory = \"cuda:0\"") == 0);
      MESSAGE(what);
    }
  }
  CHECK(code_of([] { KvSlab({64 * MiB, 2 * MiB, 0.125, "gpu"}); }) == KvErrc::InvalidArgument);
  CHECK(code_of([] { KvSlab({64 * MiB, 2 * MiB, 0.125, "cuda:x"}); }) == KvErrc::InvalidArgument);
  KvSlab none({64 * MiB, 2 * MiB, 0.125, "none"});
  CHECK(none.base() == nullptr);
  CHECK(none.memory() == "none");
}

TEST_CASE("compaction empties the emptiest slabs into the fullest and keeps every block's bytes") {
  KvSlab pool({8 * MiB, 1 * MiB, 0.125, "host"});
  ModelId m = pool.add_model(model("m", tiny()));
  uint64_t bps = pool.stats().models[0].blocks_per_slab;
  const uint64_t block_bytes = pool.layout(m).block_bytes;
  std::vector<BlockId> ids;
  REQUIRE(pool.alloc(m, static_cast<uint32_t>(3 * bps), &ids).ok);
  // Slab usage becomes [10, 3, bps - 2]: slab 1 can be emptied into the others, slab 0 cannot then.
  std::vector<BlockId> drop, keep;
  std::vector<uint32_t> kept_in(3, 0);
  const uint32_t target[3] = {10, 3, static_cast<uint32_t>(bps - 2)};
  for (BlockId id : ids) {
    uint32_t s = slab_of(pool, id);
    (kept_in[s] < target[s] ? keep : drop).push_back(id);
    if (kept_in[s] < target[s]) kept_in[s]++;
  }
  pool.free(m, drop.data(), drop.size());
  pool.set_live_tokens(m, keep.size() * 16);
  // Tag each live block with its index so a lost or mixed-up copy shows.
  for (size_t i = 0; i < keep.size(); ++i) {
    std::memset(pool.base() + pool.block_offset(m, keep[i]), static_cast<int>(i + 1), block_bytes);
  }
  std::vector<BlockMove> moves;
  CHECK(pool.compact(m, 10, &moves) == 1);
  REQUIRE(moves.size() == 3);
  for (const BlockMove& mv : moves) {
    CHECK(slab_of(pool, mv.from) == 1);
    CHECK(slab_of(pool, mv.to) != 1);
    CHECK(code_of([&] { pool.block_offset(m, mv.from); }) == KvErrc::ForeignBlock);
    std::replace(keep.begin(), keep.end(), mv.from, mv.to);
  }
  // The two free blocks of the fullest slab were filled first.
  CHECK(slab_of(pool, moves[0].to) == 2);
  CHECK(slab_of(pool, moves[1].to) == 2);
  CHECK(slab_of(pool, moves[2].to) == 0);
  std::set<BlockId> unique(keep.begin(), keep.end());
  CHECK(unique.size() == keep.size());
  int bad = 0;
  for (size_t i = 0; i < keep.size(); ++i) {
    const uint8_t* b = pool.base() + pool.block_offset(m, keep[i]);
    for (uint64_t k = 0; k < block_bytes; ++k) bad += b[k] != static_cast<uint8_t>(i + 1);
  }
  CHECK(bad == 0);
  PoolStats s = pool.stats();
  CHECK(s.free_slabs == s.num_slabs - 2);
  CHECK(s.models[0].live_blocks == keep.size());
  CHECK(s.models[0].live_tokens == keep.size() * 16);
  CHECK(s.models[0].blocks_moved == 3);
  CHECK(s.pool_bytes == s.free_bytes + s.unusable_bytes + s.held_bytes);
  // Nothing more can be emptied: slab 0 has 11 live blocks and no room elsewhere.
  moves.clear();
  CHECK(pool.compact(m, 10, &moves) == 0);
  CHECK(moves.empty());
}

TEST_CASE("compaction under random traffic: ids stay unique, data intact, accounting exact") {
  KvSlab pool({16 * MiB, 1 * MiB, 0.125, "host"});
  ModelId a = pool.add_model(model("a", tiny(2), 40));
  ModelId b = pool.add_model(model("b", tiny(3, KvFormat::Int8)));
  std::mt19937 rng(7);
  std::vector<std::pair<BlockId, uint8_t>> live[2];
  uint8_t tag = 0;
  for (int step = 0; step < 3000; ++step) {
    int w = static_cast<int>(rng() % 2);
    ModelId m = w == 0 ? a : b;
    uint64_t bytes = pool.layout(m).block_bytes;
    uint32_t op = rng() % 10;
    if (op < 5) {
      std::vector<BlockId> got;
      uint32_t n = 1 + rng() % 6;
      if (pool.alloc(m, n, &got).ok) {
        for (BlockId id : got) {
          std::memset(pool.base() + pool.block_offset(m, id), ++tag, bytes);
          live[w].push_back({id, tag});
        }
      }
    } else if (op < 9 && !live[w].empty()) {
      size_t k = rng() % live[w].size();
      pool.free(m, &live[w][k].first, 1);
      live[w].erase(live[w].begin() + static_cast<long>(k));
    } else {
      std::vector<BlockMove> moves;
      pool.compact(m, 1 + rng() % 3, &moves);
      for (const BlockMove& mv : moves) {
        auto it = std::find_if(live[w].begin(), live[w].end(), [&](auto& p) { return p.first == mv.from; });
        REQUIRE(it != live[w].end());
        it->first = mv.to;
      }
    }
    if (step % 100 == 0 || step == 2999) {
      PoolStats s = pool.stats();
      REQUIRE(s.pool_bytes == s.free_bytes + s.unusable_bytes + s.held_bytes);
      std::set<uint64_t> starts;
      for (int v = 0; v < 2; ++v) {
        ModelId mv = v == 0 ? a : b;
        REQUIRE(s.models[v].live_blocks == live[v].size());
        for (auto& [id, t] : live[v]) {
          const uint8_t* p = pool.base() + pool.block_offset(mv, id);
          REQUIRE(p[0] == t);
          REQUIRE(p[pool.layout(mv).block_bytes - 1] == t);
          REQUIRE(starts.insert(id).second);
        }
      }
    }
  }
}
