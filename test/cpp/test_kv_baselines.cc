// The three baseline KV policies the KV Slab is compared against (static partitions, a unified
// block pool, a paged on-demand pool). Capacities, offsets and page counts are computed by hand
// here, not with the policies' own formulas, so an off-by-one in a policy fails a test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kv/kv_pool.h"
#include "kv/paged_pool.h"
#include "kv/static_pool.h"
#include "kv/unified_pool.h"

using namespace fineserve::kv;

namespace {

constexpr uint64_t kKiB = 1024;

// tokens_per_block 16, 2 KV heads, head_dim 64: one layer's K (or V) region is
// 2 heads * 16 tokens * 64 elements * bytes per element.
KvGeometry geom(uint32_t layers = 2, KvFormat format = KvFormat::F16) {
  KvGeometry g;
  g.tokens_per_block = 16;
  g.num_layers = layers;
  g.num_kv_heads = 2;
  g.head_dim = 64;
  g.format = format;
  return g;
}
// By hand: F16 region = 2 * 16 * 128 = 4096, block = layers * 2 * 4096.
constexpr uint64_t kF16Block2L = 16 * kKiB;   // geom(2)
constexpr uint64_t kF16Block3L = 24 * kKiB;   // geom(3)
// fp8: K region 2048 B of rows + 2 heads x 128 B of K references (f16 per channel) = 2304, V 2048.
constexpr uint64_t kFp8Block2L = 2 * (2304 + 2048);  // geom(2, Fp8E4M3): 8.5 KiB
constexpr uint64_t kF16Token2L = 1024;        // 2 layers * 2 (K,V) * 2 heads * 128 bytes
constexpr uint64_t kFp8Token2L = 544;        // 512 B of E4M3 + 512 B of references / 16 tokens

ModelOptions opts(const std::string& name, const KvGeometry& g, uint64_t partition_bytes = 0) {
  ModelOptions o;
  o.name = name;
  o.geometry = g;
  o.partition_bytes = partition_bytes;
  return o;
}

// Every number stats() reports, so "stats unchanged" compares all of them.
std::string fingerprint(const PoolStats& s) {
  std::ostringstream o;
  o << s.policy << ' ' << s.pool_bytes << ' ' << s.slab_bytes << ' ' << s.num_slabs << ' '
    << s.free_slabs << ' ' << s.free_bytes << ' ' << s.unusable_bytes << ' ' << s.held_bytes << ' '
    << s.live_token_bytes << ' ' << s.internal_bytes << ' ' << s.external_bytes << ' '
    << s.tail_bytes << ' ' << s.peak_held_bytes << ' ' << s.peak_live_token_bytes << ' '
    << s.map_calls << ' ' << s.map_cost_ns;
  for (const ModelStats& m : s.models) {
    o << " | " << m.id << ' ' << m.name << ' ' << m.block_bytes << ' ' << m.token_bytes << ' '
      << m.blocks_per_slab << ' ' << m.reserve_blocks << ' ' << m.live_blocks << ' '
      << m.live_tokens << ' ' << m.slabs_held << ' ' << m.held_bytes << ' ' << m.live_token_bytes
      << ' ' << m.internal_bytes << ' ' << m.external_bytes << ' ' << m.tail_bytes << ' '
      << m.peak_live_blocks << ' ' << m.peak_held_bytes << ' ' << m.peak_live_token_bytes << ' '
      << m.alloc_calls << ' ' << m.blocks_allocated << ' ' << m.free_calls << ' '
      << m.blocks_freed << ' ' << m.oom_count;
  }
  return o.str();
}

const ModelStats& model_stats(const PoolStats& s, ModelId id) {
  for (const ModelStats& m : s.models) {
    if (m.id == id) return m;
  }
  FAIL("model " << id << " missing from stats");
  return s.models.front();
}

// The identities of kv_pool.h, plus "no part exceeds the whole" so an unsigned wrap-around
// cannot make them hold by accident.
void check_accounting(const KvPool& pool) {
  PoolStats s = pool.stats();
  uint64_t held = 0;
  for (const ModelStats& m : s.models) {
    INFO("model " << m.name);
    CHECK(m.live_token_bytes == m.live_tokens * m.token_bytes);
    CHECK(m.internal_bytes == m.live_blocks * m.block_bytes - m.live_token_bytes);
    CHECK(m.held_bytes == m.live_token_bytes + m.internal_bytes + m.external_bytes + m.tail_bytes);
    CHECK(m.internal_bytes <= m.held_bytes);
    CHECK(m.external_bytes <= m.held_bytes);
    CHECK(m.tail_bytes <= m.held_bytes);
    CHECK(m.live_blocks * m.block_bytes <= m.held_bytes);
    held += m.held_bytes;
  }
  CHECK(s.held_bytes == held);
  CHECK(s.free_bytes <= s.pool_bytes);
  CHECK(s.pool_bytes == s.free_bytes + s.unusable_bytes + held);
}

// Runs f, which must throw KvError `code`, and checks the pool's stats did not move.
void expect_error(const KvPool& pool, KvErrc code, const std::function<void()>& f,
                  const char* must_mention = nullptr) {
  std::string before = fingerprint(pool.stats());
  bool threw = false;
  try {
    f();
  } catch (const KvError& e) {
    threw = true;
    CHECK_MESSAGE(e.code() == code, "got " << errc_code(e.code()) << ": " << e.what());
    if (must_mention) CHECK_MESSAGE(std::string(e.what()).find(must_mention) != std::string::npos, e.what());
  }
  CHECK_MESSAGE(threw, "expected KvError " << errc_code(code));
  CHECK(fingerprint(pool.stats()) == before);
}

void expect_ctor_error(KvErrc code, const std::function<void()>& make, const char* must_mention) {
  bool threw = false;
  try {
    make();
  } catch (const KvError& e) {
    threw = true;
    CHECK_MESSAGE(e.code() == code, "got " << errc_code(e.code()) << ": " << e.what());
    CHECK_MESSAGE(std::string(e.what()).find(must_mention) != std::string::npos, e.what());
  }
  CHECK_MESSAGE(threw, "expected KvError " << errc_code(code));
}

std::vector<BlockId> alloc_ok(KvPool& pool, ModelId m, uint32_t n) {
  std::vector<BlockId> ids;
  AllocResult r = pool.alloc(m, n, &ids);
  REQUIRE(r.ok);
  REQUIRE(ids.size() == n);
  CHECK(r.available == pool.available_blocks(m));
  return ids;
}

// Allocates one block at a time until the pool refuses, checking the accounting on the way.
std::vector<BlockId> fill(KvPool& pool, ModelId m) {
  std::vector<BlockId> ids;
  for (;;) {
    uint64_t available = pool.available_blocks(m);
    std::vector<BlockId> got;
    AllocResult r = pool.alloc(m, 1, &got);
    CHECK(r.ok == (available >= 1));
    if (!r.ok) {
      CHECK(got.empty());
      CHECK(r.available == 0);
      return ids;
    }
    ids.push_back(got.at(0));
    check_accounting(pool);
    REQUIRE(ids.size() < 100000);
  }
}

// Live blocks of physical pools cover disjoint byte ranges inside the pool; `span` is each
// model's block as the policy stores it.
void check_disjoint(const KvPool& pool, const std::map<ModelId, std::vector<BlockId>>& live) {
  PoolStats s = pool.stats();
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [m, ids] : live) {
    uint64_t span = model_stats(s, m).block_bytes;
    for (BlockId id : ids) {
      uint64_t off = pool.block_offset(m, id);
      CHECK(off == uint64_t{id} * kBlockGranule);
      ranges.emplace_back(off, off + span);
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 0; i < ranges.size(); ++i) {
    CHECK(ranges[i].second <= pool.pool_bytes());
    if (i > 0) CHECK_MESSAGE(ranges[i - 1].second <= ranges[i].first, "overlap at " << ranges[i].first);
  }
}

}  // namespace

TEST_CASE("baseline geometry: the hand-computed block and token sizes hold") {
  CHECK(make_layout(geom(2)).block_bytes == kF16Block2L);
  CHECK(make_layout(geom(3)).block_bytes == kF16Block3L);
  CHECK(make_layout(geom(2, KvFormat::Fp8E4M3)).block_bytes == kFp8Block2L);
  CHECK(make_layout(geom(2)).token_bytes == kF16Token2L);
  CHECK(make_layout(geom(2, KvFormat::Fp8E4M3)).token_bytes == kFp8Token2L);
}

// --- static partitions -------------------------------------------------------------------------

TEST_CASE("baseline static: a partition holds floor(partition / block) blocks, then OOM") {
  StaticPartitionPool pool(1 << 20);
  // 100000 rounds down to 99968 (1562 granules): 6 blocks of 16 KiB and a 1664-byte tail.
  ModelId a = pool.add_model(opts("a", geom(), 100000));
  CHECK(pool.available_blocks(a) == 6);
  const ModelStats empty = model_stats(pool.stats(), a);
  CHECK(empty.held_bytes == 99968);
  CHECK(empty.blocks_per_slab == 6);
  CHECK(empty.external_bytes == 6 * kF16Block2L);
  CHECK(empty.tail_bytes == 1664);
  CHECK(pool.stats().free_bytes == (1 << 20) - 99968);
  CHECK(pool.stats().num_slabs == 1);
  check_accounting(pool);

  std::vector<BlockId> ids = fill(pool, a);
  CHECK(ids.size() == 6);
  PoolStats s = pool.stats();
  CHECK(model_stats(s, a).external_bytes == 0);
  CHECK(model_stats(s, a).oom_count == 1);
  CHECK(model_stats(s, a).live_blocks == 6);
  check_disjoint(pool, {{a, ids}});
  for (BlockId id : ids) CHECK(pool.block_offset(a, id) + kF16Block2L <= 99968);

  // The refused call changed nothing but its counters; an all-or-nothing request is refused too.
  std::vector<BlockId> none;
  AllocResult r = pool.alloc(a, 2, &none);
  CHECK_FALSE(r.ok);
  CHECK(none.empty());
  CHECK(model_stats(pool.stats(), a).live_blocks == 6);

  // n == 0 succeeds even when full.
  CHECK(pool.alloc(a, 0, &none).ok);
  CHECK(none.empty());
}

TEST_CASE("baseline static: free and reallocate return the same blocks") {
  StaticPartitionPool pool(1 << 20);
  ModelId a = pool.add_model(opts("a", geom(), 4 * kF16Block2L));
  std::vector<BlockId> ids = alloc_ok(pool, a, 4);
  CHECK(pool.available_blocks(a) == 0);
  BlockId two[] = {ids[1], ids[3]};
  pool.free(a, two, 2);
  check_accounting(pool);
  CHECK(pool.available_blocks(a) == 2);
  CHECK(model_stats(pool.stats(), a).external_bytes == 2 * kF16Block2L);
  std::vector<BlockId> again = alloc_ok(pool, a, 2);
  CHECK(std::set<BlockId>(again.begin(), again.end()) == std::set<BlockId>{ids[1], ids[3]});
  check_accounting(pool);
}

TEST_CASE("baseline static: bad ids, unknown models and bad options throw and change nothing") {
  StaticPartitionPool pool(1 << 20);
  ModelId a = pool.add_model(opts("a", geom(), 4 * kF16Block2L));
  ModelId b = pool.add_model(opts("b", geom(), 4 * kF16Block2L));
  std::vector<BlockId> ia = alloc_ok(pool, a, 2);
  std::vector<BlockId> ib = alloc_ok(pool, b, 2);
  pool.set_live_tokens(a, 20);

  BlockId foreign = ib[0];
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.free(a, &foreign, 1); });
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.block_offset(a, foreign); });
  BlockId garbage[] = {0xFFFFFFFFu, ia[0] + 1};  // outside the partition; off a block boundary
  for (BlockId g : garbage) expect_error(pool, KvErrc::ForeignBlock, [&] { pool.free(a, &g, 1); });
  // A good id first and a bad one after: nothing is freed.
  BlockId mixed[] = {ia[0], foreign};
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.free(a, mixed, 2); });
  BlockId twice[] = {ia[0], ia[0]};
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.free(a, twice, 2); }, "twice");
  BlockId never = ia[1] + kF16Block2L / kBlockGranule;  // in the partition, never allocated
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.free(a, &never, 1); });
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.block_offset(a, never); });
  pool.free(a, &ia[1], 1);
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.free(a, &ia[1], 1); }, "double free");

  std::vector<BlockId> out;
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.alloc(7, 1, &out); });
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.free(7, ia.data(), 1); });
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.available_blocks(7); });
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.block_offset(7, ia[0]); });
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.remove_model(7); });

  expect_error(pool, KvErrc::InvalidArgument, [&] { pool.add_model(opts("c", geom(), 0)); },
               "partitionBytes = 0");
  // A 24 KiB block (3 layers) cannot fit a 16 KiB partition.
  expect_error(pool, KvErrc::OversizeGeometry,
               [&] { pool.add_model(opts("big", geom(3), kF16Block2L)); }, "big");
  expect_error(pool, KvErrc::InvalidArgument, [&] { pool.add_model(opts("c", geom(), 1 << 20)); },
               "largest");
  expect_error(pool, KvErrc::DuplicateModel, [&] { pool.add_model(opts("a", geom(), kF16Block2L)); });
  expect_error(pool, KvErrc::InvalidGeometry,
               [&] { pool.add_model(opts("c", geom(0), kF16Block2L)); });
  expect_error(pool, KvErrc::InvalidArgument, [&] { pool.set_live_tokens(a, 17); });  // 1 block left
  check_accounting(pool);

  // A rejected model used no id and no memory: the next one lands right after b.
  ModelId c = pool.add_model(opts("c", geom(), kF16Block2L));
  CHECK(pool.block_offset(c, alloc_ok(pool, c, 1)[0]) == 8 * kF16Block2L);
}

TEST_CASE("baseline static: partitions are carved first-fit and come back on remove") {
  const uint64_t P = 64 * kKiB;  // 4 blocks
  StaticPartitionPool pool(4 * P + 100);
  auto offset_of = [&](ModelId m) { return pool.block_offset(m, alloc_ok(pool, m, 1)[0]); };
  ModelId a = pool.add_model(opts("a", geom(), P));
  ModelId b = pool.add_model(opts("b", geom(), P));
  ModelId c = pool.add_model(opts("c", geom(), P));
  CHECK(offset_of(a) == 0);
  CHECK(offset_of(b) == P);
  CHECK(offset_of(c) == 2 * P);
  CHECK(pool.stats().free_bytes == P + 100);
  check_accounting(pool);

  std::vector<BlockId> b_ids = alloc_ok(pool, b, 3);  // b now holds all 4 of its blocks
  pool.remove_model(b);
  check_accounting(pool);
  CHECK(pool.stats().free_bytes == 2 * P + 100);
  CHECK(pool.stats().models.size() == 2);
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.free(b, b_ids.data(), 1); });
  // Two separate holes of P (+100): 2P does not fit anywhere.
  expect_error(pool, KvErrc::InvalidArgument, [&] { pool.add_model(opts("d", geom(), 2 * P)); },
               "free");
  // First fit: the lowest hole, where b was, even though the last hole is larger.
  ModelId e = pool.add_model(opts("e", geom(), P));
  CHECK(offset_of(e) == P);
  // b's old ids are e's now; a still cannot free them.
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.free(a, b_ids.data(), 1); });

  // Removing a and e leaves [0, 2P) as one coalesced hole, so a 2P partition fits at 0.
  pool.remove_model(a);
  pool.remove_model(e);
  ModelId f = pool.add_model(opts("f", geom(), 2 * P));
  CHECK(offset_of(f) == 0);
  CHECK(pool.available_blocks(f) == 7);
  check_accounting(pool);

  pool.remove_model(f);
  pool.remove_model(c);
  CHECK(pool.stats().free_bytes == pool.pool_bytes());
  ModelId g = pool.add_model(opts("g", geom(), 4 * P));  // everything coalesced again
  CHECK(pool.available_blocks(g) == 16);
}

TEST_CASE("baseline static: live tokens are capped by blocks and clamped on free") {
  StaticPartitionPool pool(1 << 20);
  ModelId a = pool.add_model(opts("a", geom(), 4 * kF16Block2L));
  std::vector<BlockId> ids = alloc_ok(pool, a, 2);
  expect_error(pool, KvErrc::InvalidArgument, [&] { pool.set_live_tokens(a, 33); });
  pool.set_live_tokens(a, 20);
  ModelStats s = model_stats(pool.stats(), a);
  CHECK(s.live_token_bytes == 20 * kF16Token2L);
  CHECK(s.internal_bytes == 2 * kF16Block2L - 20 * kF16Token2L);
  check_accounting(pool);
  pool.free(a, &ids[0], 1);
  CHECK(model_stats(pool.stats(), a).live_tokens == 16);
  check_accounting(pool);
  pool.remove_model(a);
  CHECK(pool.stats().free_bytes == pool.pool_bytes());
  CHECK(pool.stats().live_token_bytes == 0);
}

// --- unified block pool ------------------------------------------------------------------------

TEST_CASE("baseline unified: constructor arguments are checked") {
  expect_ctor_error(KvErrc::InvalidArgument, [] { UnifiedBlockPool p(1 << 20, 0); }, "blockBytes = 0");
  expect_ctor_error(KvErrc::InvalidArgument, [] { UnifiedBlockPool p(1000, 4096); }, "blockBytes = 4096");
  expect_ctor_error(KvErrc::InvalidArgument, [] { UnifiedBlockPool p(0, 4096); }, "poolBytes = 0");
  // 16001 rounds up to 16064; 10 blocks fit and the 100 bytes after them are unusable.
  UnifiedBlockPool p(10 * 16064 + 100, 16001);
  PoolStats s = p.stats();
  CHECK(s.slab_bytes == 16064);
  CHECK(s.num_slabs == 10);
  CHECK(s.free_slabs == 10);
  CHECK(s.unusable_bytes == 100);
  check_accounting(p);
}

TEST_CASE("baseline unified: models share one pool of equal blocks until it is full") {
  // 64 blocks of 16 KiB and 1000 bytes no block can use.
  UnifiedBlockPool pool((1 << 20) + 1000, kF16Block2L);
  ModelId a = pool.add_model(opts("a", geom()));
  ModelId b = pool.add_model(opts("b", geom(2, KvFormat::Fp8E4M3)));
  std::vector<BlockId> ia = alloc_ok(pool, a, 10);
  CHECK(pool.available_blocks(b) == 54);
  CHECK(pool.available_blocks(a) == 54);
  std::vector<BlockId> ib = fill(pool, b);
  CHECK(ib.size() == 54);
  CHECK(pool.available_blocks(a) == 0);
  std::vector<BlockId> out;
  CHECK_FALSE(pool.alloc(a, 1, &out).ok);
  check_disjoint(pool, {{a, ia}, {b, ib}});
  PoolStats s = pool.stats();
  CHECK(s.free_slabs == 0);
  CHECK(s.free_bytes == 0);
  CHECK(s.unusable_bytes == 1000);
  CHECK(model_stats(s, a).held_bytes == 10 * kF16Block2L);
  CHECK(model_stats(s, b).held_bytes == 54 * kF16Block2L);
  check_accounting(pool);

  // Blocks freed by one model serve the other.
  pool.free(a, ia.data(), 4);
  CHECK(pool.available_blocks(b) == 4);
  std::vector<BlockId> more = alloc_ok(pool, b, 4);
  CHECK(std::set<BlockId>(more.begin(), more.end()) == std::set<BlockId>(ia.begin(), ia.begin() + 4));
  check_accounting(pool);
}

TEST_CASE("baseline unified: a small geometry wastes exactly its padding") {
  UnifiedBlockPool pool(1 << 20, kF16Block2L);
  ModelId small = pool.add_model(opts("fp8", geom(2, KvFormat::Fp8E4M3)));
  alloc_ok(pool, small, 5);
  pool.set_live_tokens(small, 5 * 16);  // every token slot full
  ModelStats s = model_stats(pool.stats(), small);
  CHECK(s.block_bytes == kF16Block2L);
  CHECK(s.blocks_per_slab == 1);
  CHECK(s.held_bytes == 5 * kF16Block2L);
  CHECK(s.live_token_bytes == 5 * 16 * kFp8Token2L);
  CHECK(s.internal_bytes == 5 * (kF16Block2L - kFp8Block2L));
  CHECK(s.external_bytes == 0);
  CHECK(s.tail_bytes == 0);
  check_accounting(pool);
}

TEST_CASE("baseline unified: bad ids, unknown models and oversize geometry throw and change nothing") {
  UnifiedBlockPool pool(16 * kF16Block2L, kF16Block2L);
  ModelId a = pool.add_model(opts("a", geom()));
  ModelId b = pool.add_model(opts("b", geom(1)));
  std::vector<BlockId> ia = alloc_ok(pool, a, 3);
  std::vector<BlockId> ib = alloc_ok(pool, b, 3);
  const BlockId step = kF16Block2L / kBlockGranule;

  expect_error(pool, KvErrc::OversizeGeometry, [&] { pool.add_model(opts("deep", geom(3))); },
               "deep");
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.free(a, &ib[0], 1); });
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.block_offset(a, ib[0]); });
  BlockId garbage[] = {ia[0] + 1, 16 * step, 0xFFFFFFFFu};  // off-boundary, past the end
  for (BlockId g : garbage) expect_error(pool, KvErrc::ForeignBlock, [&] { pool.free(a, &g, 1); });
  BlockId mixed[] = {ia[0], ia[1], ib[1]};
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.free(a, mixed, 3); });
  BlockId twice[] = {ia[2], ia[0], ia[2]};
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.free(a, twice, 3); }, "twice");
  BlockId never = 10 * step;
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.free(a, &never, 1); });
  pool.free(a, &ia[2], 1);
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.free(a, &ia[2], 1); });
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.block_offset(a, ia[2]); });
  std::vector<BlockId> out;
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.alloc(9, 1, &out); });
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.set_live_tokens(9, 0); });
  check_accounting(pool);
}

TEST_CASE("baseline unified: remove_model frees everything the model holds") {
  UnifiedBlockPool pool(8 * kF16Block2L, kF16Block2L);
  ModelId a = pool.add_model(opts("a", geom()));
  ModelId b = pool.add_model(opts("b", geom()));
  std::vector<BlockId> ia = alloc_ok(pool, a, 5);
  alloc_ok(pool, b, 3);
  pool.set_live_tokens(a, 70);
  CHECK(pool.available_blocks(b) == 0);
  pool.remove_model(a);
  check_accounting(pool);
  CHECK(pool.available_blocks(b) == 5);
  CHECK(pool.stats().free_bytes == 5 * kF16Block2L);
  CHECK(pool.stats().live_token_bytes == 0);
  std::vector<BlockId> taken = alloc_ok(pool, b, 5);
  CHECK(std::set<BlockId>(taken.begin(), taken.end()) == std::set<BlockId>(ia.begin(), ia.end()));
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.available_blocks(a); });
}

// --- paged on-demand pool ----------------------------------------------------------------------

TEST_CASE("baseline paged: constructor arguments are checked") {
  expect_ctor_error(KvErrc::InvalidArgument, [] { PagedPool p(1 << 20, 0, 1); }, "pageBytes = 0");
  expect_ctor_error(KvErrc::InvalidArgument, [] { PagedPool p(1 << 20, 2 << 20, 1); }, "pageBytes");
  PagedPool p(3 * 65536 + 5, 65536, 1);
  CHECK(p.stats().num_slabs == 3);
  CHECK(p.stats().unusable_bytes == 5);
  check_accounting(p);
}

TEST_CASE("baseline paged: pages are mapped on first touch and unmapped when emptied") {
  const uint64_t P = 64 * kKiB;  // 4 blocks of 16 KiB per page
  PagedPool pool(10 * P + 123, P, 1000);
  ModelId a = pool.add_model(opts("a", geom()));
  CHECK(pool.available_blocks(a) == 40);
  auto map_calls = [&] { return pool.stats().map_calls; };

  std::vector<BlockId> ids = alloc_ok(pool, a, 1);
  CHECK(ids[0] == 0);
  CHECK(map_calls() == 1);
  for (BlockId id : alloc_ok(pool, a, 3)) ids.push_back(id);
  CHECK(map_calls() == 1);  // blocks 1..3 share page 0
  for (BlockId id : alloc_ok(pool, a, 1)) ids.push_back(id);
  CHECK(map_calls() == 2);
  std::vector<BlockId> rest = fill(pool, a);
  ids.insert(ids.end(), rest.begin(), rest.end());
  CHECK(ids.size() == 40);
  for (size_t j = 0; j < ids.size(); ++j) {
    CHECK(ids[j] == j);  // lowest virtual indices first
    CHECK(pool.block_offset(a, ids[j]) == j * kF16Block2L);
  }
  PoolStats s = pool.stats();
  CHECK(s.map_calls == 10);
  CHECK(s.map_cost_ns == 10 * 1000);
  CHECK(s.free_slabs == 0);
  CHECK(s.unusable_bytes == 123);
  CHECK(model_stats(s, a).slabs_held == 10);
  CHECK(model_stats(s, a).external_bytes == 0);

  // Emptying page 0 unmaps it; a block freed from a page still in use unmaps nothing.
  pool.free(a, ids.data(), 4);
  CHECK(map_calls() == 11);
  CHECK(pool.stats().free_slabs == 1);
  pool.free(a, &ids[4], 1);
  CHECK(map_calls() == 11);
  s = pool.stats();
  CHECK(model_stats(s, a).slabs_held == 9);
  CHECK(model_stats(s, a).external_bytes == kF16Block2L);
  CHECK(pool.available_blocks(a) == 5);
  check_accounting(pool);

  // The lowest freed index comes back first and maps its page again.
  std::vector<BlockId> again = alloc_ok(pool, a, 1);
  CHECK(again[0] == 0);
  CHECK(map_calls() == 12);
  check_accounting(pool);

  pool.remove_model(a);  // 10 mapped pages, one unmap each
  s = pool.stats();
  CHECK(s.map_calls == 22);
  CHECK(s.map_cost_ns == 22 * 1000);
  CHECK(s.free_slabs == 10);
  CHECK(s.free_bytes == 10 * P);
  check_accounting(pool);
}

TEST_CASE("baseline paged: a block straddling two pages maps both and is counted exactly") {
  const uint64_t P = 64 * kKiB;
  // 24 KiB blocks: block 2 covers [48 KiB, 72 KiB), the end of page 0 and the start of page 1.
  PagedPool pool(2 * P, P, 1);
  ModelId a = pool.add_model(opts("a", geom(3)));
  ModelId b = pool.add_model(opts("b", geom(3)));
  // 5 blocks end at 120 KiB; a sixth would end at 144 KiB, past 2 pages.
  CHECK(pool.available_blocks(a) == 5);
  std::vector<BlockId> two = alloc_ok(pool, a, 2);
  CHECK(pool.stats().map_calls == 1);
  std::vector<BlockId> third = alloc_ok(pool, a, 1);
  CHECK(third[0] == 2);
  CHECK(pool.block_offset(a, 2) == 2 * kF16Block3L);
  CHECK(pool.stats().map_calls == 2);
  CHECK(model_stats(pool.stats(), a).slabs_held == 2);
  // a now holds every page: b can get nothing, a can still fill its mapped pages.
  CHECK(pool.available_blocks(b) == 0);
  CHECK(pool.available_blocks(a) == 2);
  std::vector<BlockId> out;
  AllocResult r = pool.alloc(a, 3, &out);
  CHECK_FALSE(r.ok);
  CHECK(r.available == 2);
  CHECK(out.empty());
  check_accounting(pool);

  // Freeing block 1 keeps page 0 (blocks 0 and 2 touch it); freeing the straddler unmaps page 1.
  pool.free(a, &two[1], 1);
  CHECK(pool.stats().map_calls == 2);
  pool.free(a, &third[0], 1);
  CHECK(pool.stats().map_calls == 3);
  CHECK(model_stats(pool.stats(), a).slabs_held == 1);
  CHECK(pool.available_blocks(b) == 2);  // one page: blocks 0 and 1 of b fit in it
  CHECK(pool.available_blocks(a) == 4);  // 1 and 2 reuse page 0 (+ page 1), 3 and 4 page 1
  check_accounting(pool);
  alloc_ok(pool, b, 2);
  CHECK(pool.available_blocks(a) == 1);  // block 1 fits in page 0; block 2 needs a page
  CHECK(pool.stats().free_slabs == 0);
  check_accounting(pool);
}

TEST_CASE("baseline paged: bad ids, unknown models and oversize geometry throw and change nothing") {
  const uint64_t P = 64 * kKiB;
  PagedPool pool(P, P, 1);
  // 8 layers fill a page exactly; 16 layers need two pages the pool does not have.
  ModelId a = pool.add_model(opts("a", geom(2)));
  expect_error(pool, KvErrc::OversizeGeometry, [&] { pool.add_model(opts("huge", geom(16))); },
               "huge");
  std::vector<BlockId> ia = alloc_ok(pool, a, 2);
  BlockId never = 2;
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.free(a, &never, 1); });
  expect_error(pool, KvErrc::ForeignBlock, [&] { pool.block_offset(a, 0xFFFFFFFFu); });
  BlockId twice[] = {ia[0], ia[1], ia[0]};
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.free(a, twice, 3); }, "twice");
  pool.free(a, &ia[1], 1);
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.free(a, &ia[1], 1); });
  expect_error(pool, KvErrc::DoubleFree, [&] { pool.block_offset(a, ia[1]); });
  std::vector<BlockId> out;
  expect_error(pool, KvErrc::UnknownModel, [&] { pool.alloc(3, 1, &out); });
  expect_error(pool, KvErrc::InvalidArgument, [&] { pool.set_live_tokens(a, 17); });
  pool.remove_model(a);
  ModelId full = pool.add_model(opts("page", geom(8)));
  CHECK(pool.available_blocks(full) == 1);
  check_accounting(pool);
}

// An independent model of the paged pool: pages are the union of the live blocks' page ranges,
// and a model can get the k lowest indices it does not hold iff their new pages fit.
TEST_CASE("baseline paged: random alloc and free agree with a brute-force page model") {
  const uint64_t P = 64 * kKiB;
  const uint64_t kPages = 6;
  PagedPool pool(kPages * P, P, 1);
  std::map<ModelId, uint64_t> block;
  ModelId a = pool.add_model(opts("a", geom(3)));  // 24 KiB, straddles
  ModelId b = pool.add_model(opts("b", geom(1)));  // 8 KiB
  ModelId c = pool.add_model(opts("c", geom(5)));  // 40 KiB
  block[a] = kF16Block3L;
  block[b] = 8 * kKiB;
  block[c] = 40 * kKiB;
  std::map<ModelId, std::set<uint64_t>> live;
  auto pages_of = [&](ModelId m, const std::set<uint64_t>& blocks) {
    std::set<uint64_t> pages;
    for (uint64_t j : blocks) {
      for (uint64_t p = j * block[m] / P; p <= ((j + 1) * block[m] - 1) / P; ++p) pages.insert(p);
    }
    return pages;
  };
  auto mapped_total = [&] {
    uint64_t n = 0;
    for (auto& [m, blocks] : live) n += pages_of(m, blocks).size();
    return n;
  };
  auto oracle_available = [&](ModelId m) {
    uint64_t free_pages = kPages - mapped_total();
    uint64_t base = pages_of(m, live[m]).size();
    std::set<uint64_t> grown = live[m];
    uint64_t k = 0;
    for (uint64_t j = 0;; ++j) {
      if (grown.count(j)) continue;
      grown.insert(j);
      if (pages_of(m, grown).size() - base > free_pages) return k;
      ++k;
    }
  };

  std::mt19937 rng(20250906);
  uint64_t expected_map_calls = 0;
  for (int step = 0; step < 600; ++step) {
    ModelId m = static_cast<ModelId>(rng() % 3);
    auto before = pages_of(m, live[m]);
    if (rng() % 5 < 3) {
      uint32_t n = rng() % 5;
      uint64_t want = oracle_available(m);
      REQUIRE(pool.available_blocks(m) == want);
      std::vector<BlockId> ids;
      AllocResult r = pool.alloc(m, n, &ids);
      REQUIRE(r.ok == (n <= want));
      if (r.ok) {
        for (BlockId id : ids) {
          CHECK(live[m].count(id) == 0);
          // The lowest index the model does not hold.
          uint64_t lowest = 0;
          while (live[m].count(lowest)) ++lowest;
          CHECK(id == lowest);
          live[m].insert(id);
        }
      } else {
        CHECK(ids.empty());
        CHECK(r.available == want);
      }
    } else if (!live[m].empty()) {
      std::vector<BlockId> all(live[m].begin(), live[m].end());
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(1 + rng() % all.size());
      pool.free(m, all.data(), all.size());
      for (BlockId id : all) live[m].erase(id);
    }
    auto after = pages_of(m, live[m]);
    std::vector<uint64_t> changed;
    std::set_symmetric_difference(before.begin(), before.end(), after.begin(), after.end(),
                                  std::back_inserter(changed));
    expected_map_calls += changed.size();
    PoolStats s = pool.stats();
    REQUIRE(s.map_calls == expected_map_calls);
    REQUIRE(s.free_slabs == kPages - mapped_total());
    for (ModelId id : {a, b, c}) {
      CHECK(model_stats(s, id).slabs_held == pages_of(id, live[id]).size());
      CHECK(model_stats(s, id).live_blocks == live[id].size());
    }
    if (!live[m].empty() && rng() % 2) pool.set_live_tokens(m, rng() % (live[m].size() * 16 + 1));
    check_accounting(pool);
  }
}

// --- all three ---------------------------------------------------------------------------------

TEST_CASE("baseline policies: random traffic keeps accounting exact and live blocks disjoint") {
  const uint64_t pool_bytes = 2 * 1024 * kKiB + 333;
  std::vector<std::function<std::unique_ptr<KvPool>()>> makers = {
      [&] { return std::make_unique<StaticPartitionPool>(pool_bytes); },
      [&] { return std::make_unique<UnifiedBlockPool>(pool_bytes, kF16Block3L); },
      [&] { return std::make_unique<PagedPool>(pool_bytes, 64 * kKiB, 7); },
  };
  for (auto& make : makers) {
    std::unique_ptr<KvPool> pool = make();
    INFO("policy " << pool->policy());
    const bool physical = std::string(pool->policy()) != "paged";
    std::vector<ModelId> ms = {
        pool->add_model(opts("f16", geom(2), 700 * kKiB)),
        pool->add_model(opts("fp8", geom(2, KvFormat::Fp8E4M3), 500 * kKiB)),
        pool->add_model(opts("deep", geom(3), 600 * kKiB)),
    };
    std::map<ModelId, std::vector<BlockId>> live;
    std::mt19937 rng(42);
    for (int step = 0; step < 1500; ++step) {
      ModelId m = ms[rng() % ms.size()];
      if (rng() % 3 != 0) {
        uint32_t n = rng() % 9;
        uint64_t available = pool->available_blocks(m);
        std::vector<BlockId> ids;
        AllocResult r = pool->alloc(m, n, &ids);
        REQUIRE(r.ok == (n <= available));
        CHECK(r.available == pool->available_blocks(m));
        live[m].insert(live[m].end(), ids.begin(), ids.end());
      } else if (!live[m].empty()) {
        std::shuffle(live[m].begin(), live[m].end(), rng);
        size_t k = 1 + rng() % live[m].size();
        pool->free(m, live[m].data() + live[m].size() - k, k);
        live[m].resize(live[m].size() - k);
      }
      if (!live[m].empty()) pool->set_live_tokens(m, rng() % (live[m].size() * 16 + 1));
      check_accounting(*pool);
      if (physical && step % 50 == 0) check_disjoint(*pool, live);
    }
    for (ModelId m : ms) pool->remove_model(m);
    PoolStats s = pool->stats();
    CHECK(s.models.empty());
    CHECK(s.free_bytes + s.unusable_bytes == s.pool_bytes);
  }
}
