// A reference model of the KvPool contract (kv/kv_pool.h) and a checker that drives one pool and the
// model side by side, verifying every invariant after every call. The property tests
// (test_kv_properties.cc, seeded random ops) and the fuzz target (test/fuzz/kv_pool_fuzz.cc, ops
// decoded from the fuzzer's bytes) share it, so both hold the four policies to the same rules.
//
// The model is deliberately naive (maps and vectors, nothing clever) so it is easy to trust: it
// knows which blocks each model holds and derives everything else (slabs or pages held, expected
// accounting, which error a bad id must raise) from block offsets, never from the pool's own
// bookkeeping.
//
// compact() is checked move by move: each `from` must be a live block of the model, each `to` a
// free slot of a slab the model holds that overlaps no live block of any model, and for kv-slab
// the order must follow the rule (emptiest partial slab first, only when the model's other slabs
// have room for all of it, into the fullest partial slab, ascending ids, at most max_slabs slabs,
// stopping only when the emptiest cannot be emptied); the slab and move counts are predicted from
// the used counts alone. The baselines must do nothing. See compact_at().
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "kv/kv_geometry.h"
#include "kv/kv_pool.h"
#include "kv/pool_factory.h"

namespace fineserve::kv::testing {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kSlab = 2 * kMiB;  // kv-slab slab and paged page in every config here

inline KvGeometry make_geometry(uint32_t tokens, uint32_t layers, uint32_t heads, uint32_t head_dim,
                                KvFormat format, uint32_t scale_bytes) {
  KvGeometry g;
  g.tokens_per_block = tokens;
  g.num_layers = layers;
  g.num_kv_heads = heads;
  g.head_dim = head_dim;
  g.format = format;
  g.scale_bytes = scale_bytes;
  return g;
}

// Block sizes chosen around the 2 MiB slab/page so the policies meet every shape of fit: exactly
// one block per slab, a few with no tail, ~10 and ~17 with awkward tails, ~150 tiny ones.
inline const std::vector<KvGeometry>& valid_geometries() {
  static const std::vector<KvGeometry> g = {
      make_geometry(16, 32, 8, 128, KvFormat::F16, 0),     // 2 MiB: one per slab, no tail
      make_geometry(16, 16, 8, 64, KvFormat::F16, 0),      // 512 KiB: 4 per slab, no tail
      make_geometry(16, 24, 4, 64, KvFormat::Fp8E4M3, 0),  // 204 KiB (K references included): 10 per slab + 8 KiB tail
      make_geometry(16, 28, 2, 64, KvFormat::Int8, 4),     // 119 KiB: 17 per slab + 25 KiB tail
      make_geometry(8, 12, 2, 32, KvFormat::Int8, 4),      // 13.5 KiB: 151 per slab + 9.5 KiB tail
  };
  return g;
}

// Valid geometries some policy must refuse: one larger than a slab and the unified block, and one
// that fits a slab once but would strand 47% of it (over kv-slab's default 1/8 tail bound).
inline const std::vector<KvGeometry>& oversize_geometries() {
  static const std::vector<KvGeometry> g = {
      make_geometry(32, 40, 8, 128, KvFormat::Fp8E4M3, 4),  // 2.58 MiB
      make_geometry(16, 17, 8, 128, KvFormat::F16, 0),      // 1.06 MiB: tail 0.94 MiB per slab
  };
  return g;
}

// One bad field each, so the expected error is unambiguous.
inline const std::vector<KvGeometry>& invalid_geometries() {
  static const std::vector<KvGeometry> g = {
      make_geometry(0, 8, 2, 64, KvFormat::F16, 0),
      make_geometry(16, 0, 2, 64, KvFormat::F16, 0),
      make_geometry(16, 8, 0, 64, KvFormat::F16, 0),
      make_geometry(16, 8, 2, 0, KvFormat::F16, 0),
      make_geometry(16, 8, 2, 63, KvFormat::Int4, 4),  // odd head_dim cannot pack int4
      make_geometry(16, 8, 2, 64, KvFormat::Int8, 65),
      make_geometry(16, 1025, 2, 64, KvFormat::F16, 0),
      make_geometry(4097, 8, 2, 64, KvFormat::F16, 0),
      make_geometry(16, 8, 2, 64, static_cast<KvFormat>(17), 0),
  };
  return g;
}

inline uint64_t largest_valid_block_bytes() {
  uint64_t b = 0;
  for (const KvGeometry& g : valid_geometries()) b = std::max(b, make_layout(g).block_bytes);
  return b;
}

inline const char* const kPolicies[] = {"kv-slab", "static", "unified", "paged"};

inline PoolConfig pool_config(const std::string& policy, uint64_t pool_bytes) {
  PoolConfig c;
  c.policy = policy;
  c.pool_bytes = pool_bytes;
  if (policy == "kv-slab") c.slab_bytes = kSlab;
  if (policy == "unified") c.block_bytes = largest_valid_block_bytes();
  if (policy == "paged") c.page_bytes = kSlab;
  return c;
}

// Pool sizes: tiny (OOM every few ops), medium, and two that are not a whole number of slabs, one
// not even of 64-byte granules, so unusable_bytes is exercised.
inline const uint64_t kPoolSizes[] = {8 * kMiB, 64 * kMiB, 24 * kMiB + 4160, 40 * kMiB + 1000};

// Deterministic stream for the property tests (splitmix64).
class SplitMix {
 public:
  explicit SplitMix(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform-enough in [0, bound); 0 when bound is 0.
  uint64_t below(uint64_t bound) { return bound ? next() % bound : 0; }
  bool exhausted() const { return false; }

 private:
  uint64_t s_;
};

inline uint32_t errc_bit(KvErrc c) { return uint32_t{1} << static_cast<uint32_t>(c); }
inline constexpr KvErrc kAllErrcs[] = {KvErrc::InvalidArgument, KvErrc::InvalidGeometry, KvErrc::OversizeGeometry,
                                       KvErrc::UnknownModel,    KvErrc::DuplicateModel,  KvErrc::DoubleFree,
                                       KvErrc::ForeignBlock,    KvErrc::ReserveUnavailable};

inline std::string errc_list(uint32_t mask) {
  std::string s;
  for (KvErrc c : kAllErrcs) {
    if (mask & errc_bit(c)) s += std::string(s.empty() ? "" : "|") + errc_code(c);
  }
  return s.empty() ? "(none)" : s;
}

class PoolHarness {
 public:
  // Called with a description of the first violated invariant. Must not return (doctest's FAIL
  // throws, the fuzzer traps); if it does, the harness aborts.
  using FailFn = std::function<void(const std::string&)>;

  struct Model {
    ModelId id = 0;
    ModelOptions options;
    KvLayout layout{};
    uint64_t block_bytes = 0;  // as the policy stores it (padded in unified)
    uint64_t per_unit = 0;     // blocks per slab (kv-slab) or per partition (static)
    std::vector<BlockId> live;
    std::unordered_map<BlockId, size_t> index;  // id -> position in `live`
    std::map<uint64_t, uint32_t> units;         // kv-slab: slab -> live blocks; paged: page -> blocks touching it
    std::vector<BlockId> freed;                 // recently freed ids, for double-free probes
    std::unordered_set<BlockId> ever;           // static: every id ever handed to this model
    uint64_t tokens = 0;
    uint64_t alloc_calls = 0, blocks_allocated = 0, free_calls = 0, blocks_freed = 0, oom_count = 0;
    uint64_t blocks_moved = 0;  // by compact()
    uint64_t peak_live_blocks = 0, peak_live_token_bytes = 0;

    bool is_live(BlockId id) const { return index.count(id) != 0; }
    uint64_t capacity_tokens() const { return live.size() * uint64_t{layout.geometry.tokens_per_block}; }
  };

  struct Removed {
    ModelId id;
    std::string name;
    std::vector<BlockId> ids;  // some of the blocks it held when removed
  };

  PoolHarness(const PoolConfig& config, FailFn fail) : config_(config), fail_(std::move(fail)) {
    if (config.policy == "kv-slab") policy_ = kSlabPolicy;
    else if (config.policy == "static") policy_ = kStatic;
    else if (config.policy == "unified") policy_ = kUnified;
    else if (config.policy == "paged") policy_ = kPaged;
    else fail("harness: unknown policy " + config.policy);
    try {
      pool_ = make_pool(config);
    } catch (const std::exception& e) {
      fail(std::string("make_pool threw: ") + e.what());
    }
    PoolStats s = pool_->stats();
    switch (policy_) {
      case kSlabPolicy:
        unit_ = config.slab_bytes ? config.slab_bytes : s.slab_bytes;
        break;
      case kUnified: unit_ = align_up(config.block_bytes, kBlockGranule); break;
      case kPaged: unit_ = config.page_bytes; break;
      case kStatic: unit_ = 0; break;
    }
    num_units_ = unit_ ? config.pool_bytes / unit_ : 0;
    begin("construct");
    check_all();
  }

  KvPool& pool() { return *pool_; }
  const std::string& policy() const { return config_.policy; }
  bool physical() const { return policy_ != kPaged; }
  bool is_slab() const { return policy_ == kSlabPolicy; }
  bool is_static() const { return policy_ == kStatic; }
  bool is_unified() const { return policy_ == kUnified; }
  bool is_paged() const { return policy_ == kPaged; }
  uint64_t unit_bytes() const { return unit_; }
  uint64_t num_units() const { return num_units_; }
  size_t op_count() const { return op_count_; }
  size_t num_models() const { return models_.size(); }
  const Model& model_at(size_t i) const { return models_[i]; }
  const std::vector<Removed>& removed() const { return removed_; }
  const std::vector<std::string>& removed_names() const { return removed_names_; }
  // A model id the pool has never issued (ids are never reused, so this stays unknown).
  ModelId unissued_id(uint64_t k) const { return static_cast<ModelId>(max_issued_ + 1 + k); }
  uint64_t units_held() const {
    uint64_t n = 0;
    for (const Model& m : models_) n += m.units.size();
    return n;
  }
  uint64_t free_units() const { return num_units_ - units_held(); }
  uint64_t total_live() const {
    uint64_t n = 0;
    for (const Model& m : models_) n += m.live.size();
    return n;
  }
  uint64_t available(size_t i) {
    begin("available_blocks", models_[i].id);
    try {
      return pool_->available_blocks(models_[i].id);
    } catch (const std::exception& e) {
      fail(std::string("available_blocks threw: ") + e.what());
    }
    return 0;
  }

  // ------------------------------------------------------------------------------------------
  // add_model: the contract fixes the outcome except where noted in expect_add().

  bool add_model(const ModelOptions& o) {
    begin("add_model");
    op_extra_ = describe(o);
    uint32_t must = 0, may = 0;
    expect_add(o, &must, &may);
    PoolStats before = pool_->stats();
    ModelId id = 0;
    try {
      id = pool_->add_model(o);
    } catch (const KvError& e) {
      if (!((must | may) & errc_bit(e.code()))) {
        fail(std::string("add_model threw ") + errc_code(e.code()) + " (" + e.what() + "); expected " +
             (must ? errc_list(must) : may ? "success or " + errc_list(may) : "success"));
      }
      expect_unchanged(before, "refused add_model");
      check_all();
      return false;
    } catch (const std::exception& e) {
      fail(std::string("add_model threw a non-KvError: ") + e.what());
    }
    if (must) fail("add_model succeeded; expected " + errc_list(must));
    if (issued_.count(id)) fail("add_model reused model id " + std::to_string(id));
    issued_.insert(id);
    max_issued_ = std::max<int64_t>(max_issued_, id);

    Model m;
    m.id = id;
    m.options = o;
    m.layout = make_layout(o.geometry);
    m.block_bytes = policy_ == kUnified ? unit_ : m.layout.block_bytes;
    if (policy_ == kSlabPolicy) m.per_unit = unit_ / m.layout.block_bytes;
    if (policy_ == kStatic) m.per_unit = o.partition_bytes / m.layout.block_bytes;
    models_.push_back(std::move(m));

    try {
      const KvLayout& l = pool_->layout(id);
      const KvLayout& r = models_.back().layout;
      if (l.block_bytes != r.block_bytes || l.token_bytes != r.token_bytes || l.region_bytes != r.region_bytes ||
          l.geometry.num_layers != r.geometry.num_layers) {
        fail("layout() differs from make_layout(geometry)");
      }
    } catch (const KvError& e) {
      fail(std::string("layout() threw: ") + e.what());
    }
    check_all();
    return true;
  }

  void remove_model_at(size_t i) {
    Model& m = models_[i];
    begin("remove_model (n = blocks held)", m.id, m.live.size());
    try {
      pool_->remove_model(m.id);
    } catch (const std::exception& e) {
      fail(std::string("remove_model threw: ") + e.what());
    }
    Removed r{m.id, m.options.name, {}};
    for (size_t k = 0; k < m.live.size() && k < 16; ++k) r.ids.push_back(m.live[k]);
    for (BlockId b : m.freed) {
      if (r.ids.size() >= 24) break;
      r.ids.push_back(b);
    }
    for (BlockId b : m.live) {
      if (physical()) ranges_.erase(uint64_t{b} * kBlockGranule);
    }
    if (policy_ == kPaged) map_calls_ += m.units.size();  // every mapped page is unmapped
    if (policy_ == kSlabPolicy) {
      for (auto& [slab, n] : m.units) slab_owner_.erase(slab);
    }
    removed_.push_back(std::move(r));
    if (removed_.size() > 16) removed_.erase(removed_.begin());
    removed_names_.push_back(m.options.name);
    ModelId gone = m.id;
    models_.erase(models_.begin() + static_cast<std::ptrdiff_t>(i));
    check_all();
    // Its id is now unknown to every call.
    expect_error(errc_bit(KvErrc::UnknownModel), "available_blocks(removed)",
                 [&] { (void)pool_->available_blocks(gone); });
  }

  // ------------------------------------------------------------------------------------------
  // alloc: all or nothing, succeeds iff n <= available_blocks; returns whether it succeeded.

  bool alloc_at(size_t i, uint32_t n) {
    Model& m = models_[i];
    begin("alloc", m.id, n);
    uint64_t avail = 0;
    try {
      avail = pool_->available_blocks(m.id);
    } catch (const std::exception& e) {
      fail(std::string("available_blocks threw: ") + e.what());
    }
    PoolStats before = pool_->stats();
    std::map<uint64_t, uint32_t> units_before;
    if (policy_ == kSlabPolicy) units_before = m.units;
    std::vector<BlockId> out;
    AllocResult r{};
    try {
      r = pool_->alloc(m.id, n, &out);
    } catch (const std::exception& e) {
      fail(std::string("alloc threw: ") + e.what());
    }
    m.alloc_calls++;
    bool should = n <= avail;
    if (r.ok != should) {
      fail("alloc returned ok=" + std::to_string(r.ok) + " with available_blocks=" + std::to_string(avail));
    }
    if (!r.ok) {
      m.oom_count++;
      if (!out.empty()) fail("refused alloc wrote " + std::to_string(out.size()) + " ids");
      if (r.available != avail) {
        fail("refused alloc reports available=" + std::to_string(r.available) + ", was " + std::to_string(avail));
      }
      // Out of memory changes nothing but the call counters.
      for (ModelStats& ms : before.models) {
        if (ms.id == m.id) ms.alloc_calls++, ms.oom_count++;
      }
      expect_unchanged(before, "refused alloc");
      check_all();
      return false;
    }
    if (out.size() != n) fail("alloc ok but returned " + std::to_string(out.size()) + " ids");
    for (BlockId id : out) {
      // Also catches an id returned twice by this call: the first copy is live by then.
      if (m.is_live(id)) fail("alloc returned id " + std::to_string(id) + ", already live in this model");
      add_block(m, id);
    }
    m.blocks_allocated += n;
    m.peak_live_blocks = std::max<uint64_t>(m.peak_live_blocks, m.live.size());
    if (policy_ == kSlabPolicy) check_fullest_first(m, units_before);
    uint64_t now = 0;
    try {
      now = pool_->available_blocks(m.id);
    } catch (const std::exception& e) {
      fail(std::string("available_blocks threw: ") + e.what());
    }
    if (r.available != now) {
      fail("alloc reports available=" + std::to_string(r.available) + " but available_blocks()=" + std::to_string(now));
    }
    check_all();
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // free of distinct live ids (the valid case).

  // `ids` by value: callers may pass the model's own live list, which this edits.
  void free_at(size_t i, std::vector<BlockId> ids) {
    Model& m = models_[i];
    begin("free", m.id, ids.size());
    op_ids_ = &ids;
    try {
      pool_->free(m.id, ids.data(), ids.size());
    } catch (const std::exception& e) {
      fail(std::string("free of live ids threw: ") + e.what());
    }
    for (BlockId id : ids) remove_block(m, id);
    m.free_calls++;
    m.blocks_freed += ids.size();
    m.tokens = std::min(m.tokens, m.capacity_tokens());
    check_all();
    // A freed id is no longer a block of the model.
    if (!ids.empty() && !m.is_live(ids[0])) probe_offset(i, ids[0]);
  }

  void set_tokens_at(size_t i, uint64_t tokens) {
    Model& m = models_[i];
    begin("set_live_tokens (n = tokens)", m.id, tokens);
    if (tokens > m.capacity_tokens()) {
      ModelId id = m.id;
      expect_error(errc_bit(KvErrc::InvalidArgument), "set_live_tokens over capacity",
                   [&] { pool_->set_live_tokens(id, tokens); });
      return;
    }
    try {
      pool_->set_live_tokens(m.id, tokens);
    } catch (const std::exception& e) {
      fail(std::string("set_live_tokens threw: ") + e.what());
    }
    m.tokens = tokens;
    m.peak_live_token_bytes = std::max(m.peak_live_token_bytes, tokens * m.layout.token_bytes);
    check_all();
  }

  // ------------------------------------------------------------------------------------------
  // compact(model, max_slabs). kv-slab: while fewer than max_slabs were released, take the
  // model's emptiest partial slab (fewest live blocks); if the free slots in its other slabs can
  // hold its live blocks, move them there one by one, each into the fullest partial slab at that
  // moment (as alloc picks), in ascending id order, and release the emptied slab; otherwise stop.
  // The baselines inherit KvPool::compact's default: 0 released, no moves, nothing changed.
  //
  // `prefill` entries are put in `moves` first: compact appends, so they must survive untouched.
  // Returns the slabs released.
  uint64_t compact_at(size_t i, uint64_t max_slabs, size_t prefill = 0) {
    Model& m = models_[i];
    begin("compact (n = max_slabs)", m.id, max_slabs);
    const ModelId mid = m.id;
    PoolStats before = pool_->stats();
    std::vector<BlockMove> moves;
    for (size_t k = 0; k < prefill; ++k) moves.push_back({static_cast<BlockId>(0xF00D0000u + k), static_cast<BlockId>(k)});
    uint64_t released = 0;
    try {
      released = pool_->compact(mid, max_slabs, &moves);
    } catch (const std::exception& e) {
      fail(std::string("compact threw: ") + e.what());
    }
    compact_calls_++;
    if (moves.size() < prefill) fail("compact dropped entries already in the moves vector");
    for (size_t k = 0; k < prefill; ++k) {
      if (moves[k].from != 0xF00D0000u + k || moves[k].to != k) {
        fail("compact overwrote entry " + std::to_string(k) + " already in the moves vector (it must append)");
      }
    }
    const size_t n_moves = moves.size() - prefill;

    if (policy_ != kSlabPolicy) {
      if (released != 0 || n_moves != 0) {
        fail("compact on " + config_.policy + " released " + std::to_string(released) + " and moved " +
             std::to_string(n_moves) + " blocks; this policy has nothing to compact");
      }
      expect_unchanged(before, "compact on a policy with nothing to compact");
      check_all();
      return 0;
    }

    const uint64_t bps = m.per_unit;
    const std::map<uint64_t, uint32_t> units_before = m.units;
    // Described only on failure: the model's slabs before the call and the moves it reported.
    auto ctx = [&] {
      std::string c = " (blocks/slab " + std::to_string(bps) + "; slab used counts before:";
      for (auto& [slab, n] : units_before) c += " " + std::to_string(slab) + ":" + std::to_string(n);
      c += "; released " + std::to_string(released) + "; moves:";
      for (size_t k = prefill; k < moves.size() && k < prefill + 24; ++k) {
        c += " " + std::to_string(moves[k].from) + "->" + std::to_string(moves[k].to);
      }
      if (n_moves > 24) c += " ... (" + std::to_string(n_moves) + ")";
      return c + ")";
    };

    // What the counts alone fix: which slab is emptiest and which is fullest may be a tie, but the
    // multiset of used counts evolves the same whichever is picked, so the number of slabs
    // released and of blocks moved are exact.
    uint64_t want_released = 0, want_moved = 0;
    simulate_compact(units_before, bps, max_slabs, &want_released, &want_moved);

    // Replay the moves on the reference, checking each against the rule at that moment.
    uint64_t src = UINT64_MAX;  // the slab being emptied
    uint64_t runs = 0;
    BlockId last_from = 0;
    for (size_t k = prefill; k < moves.size(); ++k) {
      const BlockMove mv = moves[k];
      const std::string nth = "move #" + std::to_string(k - prefill) + " (" + std::to_string(mv.from) + "->" +
                              std::to_string(mv.to) + ")";
      if (!m.is_live(mv.from)) fail(nth + ": `from` is not a live block of the model" + ctx());
      const uint64_t from_slab = uint64_t{mv.from} * kBlockGranule / unit_;
      if (src != UINT64_MAX && m.units.count(src)) {
        // The slab being emptied still has live blocks: the next move must take one of them.
        if (from_slab != src) {
          fail(nth + ": moved a block out of slab " + std::to_string(from_slab) + " before slab " +
               std::to_string(src) + " was emptied" + ctx());
        }
        if (mv.from <= last_from) fail(nth + ": blocks of a slab are not moved in ascending order" + ctx());
      } else {
        // A new slab to empty: it must be an emptiest partial slab, emptiable, and within max_slabs.
        const uint64_t used = m.units.at(from_slab);
        uint64_t min_used = UINT64_MAX;
        for (auto& [slab, n] : m.units) {
          if (n < bps) min_used = std::min<uint64_t>(min_used, n);
        }
        if (used >= bps) fail(nth + ": moved a block out of a full slab" + ctx());
        if (used != min_used) {
          fail(nth + ": emptied slab " + std::to_string(from_slab) + " with " + std::to_string(used) +
               " live blocks while a partial slab had only " + std::to_string(min_used) + ctx());
        }
        const uint64_t room = m.units.size() * bps - m.live.size() - (bps - used);
        if (room < used) {
          fail(nth + ": started emptying slab " + std::to_string(from_slab) + " (" + std::to_string(used) +
               " live) with only " + std::to_string(room) + " free slots in the model's other slabs" + ctx());
        }
        if (runs >= max_slabs) fail(nth + ": started emptying another slab after releasing max_slabs" + ctx());
        src = from_slab;
        runs++;
      }
      last_from = mv.from;
      const uint64_t to_off = uint64_t{mv.to} * kBlockGranule;
      if (to_off >= config_.pool_bytes) fail(nth + ": `to` is outside the pool" + ctx());
      const uint64_t to_slab = to_off / unit_;
      if (to_slab == src) fail(nth + ": `to` is in the slab being emptied" + ctx());
      auto dst = m.units.find(to_slab);
      if (dst == m.units.end()) {
        fail(nth + ": `to` is in slab " + std::to_string(to_slab) +
             ", which the model did not hold with live blocks (a free, released or foreign slab)" + ctx());
      }
      uint64_t fullest = 0;
      for (auto& [slab, n] : m.units) {
        if (slab != src && n < bps) fullest = std::max<uint64_t>(fullest, n);
      }
      if (dst->second >= bps) fail(nth + ": `to` is in a full slab" + ctx());
      if (dst->second != fullest) {
        fail(nth + ": moved into slab " + std::to_string(to_slab) + " with " + std::to_string(dst->second) +
             " live while another partial slab had " + std::to_string(fullest) + ctx());
      }
      // Out of the old place (its id joins the stale ids the probes use), into the new one:
      // add_block checks `to` is a live block of the model at its id's offset, on a slot boundary,
      // overlapping no live block of any model.
      remove_block(m, mv.from);
      add_block(m, mv.to);
      m.blocks_moved++;
    }
    if (src != UINT64_MAX && m.units.count(src)) {
      fail("compact left slab " + std::to_string(src) + " with " + std::to_string(m.units.at(src)) +
           " live blocks after moving some out of it" + ctx());
    }
    expect_eq(released, runs, [&] { return "compact's return = slabs it emptied" + ctx(); });
    if (released > max_slabs) fail("compact released more than max_slabs" + ctx());
    expect_eq(released, want_released, [&] { return "slabs compact released" + ctx(); });
    expect_eq(uint64_t{n_moves}, want_moved, [&] { return "blocks compact moved" + ctx(); });
    // The stopping rule, stated directly: short of max_slabs, no partial slab is left that the
    // free slots of the model's other slabs could absorb.
    if (released < max_slabs) {
      uint64_t min_used = UINT64_MAX;
      for (auto& [slab, n] : m.units) {
        if (n < bps) min_used = std::min<uint64_t>(min_used, n);
      }
      if (min_used != UINT64_MAX && m.units.size() * bps - m.live.size() - (bps - min_used) >= min_used) {
        fail("compact stopped at " + std::to_string(released) + " < max_slabs while a partial slab with " +
             std::to_string(min_used) + " live blocks could still be emptied" + ctx());
      }
    }

    PoolStats after = pool_->stats();
    expect_eq(after.free_slabs, before.free_slabs + released, [&] { return "free_slabs after compact = before + released" + ctx(); });
    for (const ModelStats& b : before.models) {
      const ModelStats* a = nullptr;
      for (const ModelStats& x : after.models) {
        if (x.id == b.id) a = &x;
      }
      if (!a) fail("model " + std::to_string(b.id) + " vanished from stats after compact");
      if (b.id != mid) {
        if (!same_model_stats(*a, b)) fail("compact of model " + std::to_string(mid) + " changed model " + std::to_string(b.id));
        continue;
      }
      expect_eq(a->slabs_held, b.slabs_held - released, [&] { return "slabs_held after compact = before - released" + ctx(); });
      expect_eq(a->live_blocks, b.live_blocks, "compact changed live_blocks");
      expect_eq(a->live_tokens, b.live_tokens, "compact changed live_tokens");
      expect_eq(a->blocks_moved, b.blocks_moved + n_moves, [&] { return "blocks_moved after compact = before + moves" + ctx(); });
    }
    compact_released_ += released;
    compact_moved_ += n_moves;
    check_all();
    // A moved-from id is no block of the model any more.
    if (n_moves) probe_offset(i, moves[prefill].from);
    return released;
  }

  // Calls compact_at made, and what it released and moved in all, so tests can tell the rule was
  // actually exercised.
  uint64_t compact_calls() const { return compact_calls_; }
  uint64_t compact_released() const { return compact_released_; }
  uint64_t compact_moved() const { return compact_moved_; }

  // ------------------------------------------------------------------------------------------
  // Invalid calls: each must throw KvError with an allowed code and leave the pool unchanged.

  // Codes free(model, {id}) and block_offset(model, id) may raise for `id`; 0 when it is a live
  // block of the model (a valid id).
  uint32_t classify(const Model& m, BlockId id) const {
    if (m.is_live(id)) return 0;
    const uint32_t foreign = errc_bit(KvErrc::ForeignBlock);
    const uint32_t either = foreign | errc_bit(KvErrc::DoubleFree);
    // Paged ids are per-model virtual indices: "never allocated" and "freed" look alike.
    if (policy_ == kPaged) return either;
    uint64_t off = uint64_t{id} * kBlockGranule;
    if (off >= config_.pool_bytes) return foreign;
    // Anywhere inside another model's live block is that model's memory.
    auto it = ranges_.upper_bound(off);
    if (it != ranges_.begin()) {
      --it;
      if (off < it->second.end && it->second.model != m.id) return foreign;
    }
    switch (policy_) {
      case kSlabPolicy: {
        uint64_t slab = off / unit_;
        if (slab >= num_units_) return foreign;  // the pool's unusable tail
        auto owner = slab_owner_.find(slab);
        if (owner == slab_owner_.end()) return either;  // a free slab
        if (owner->second != m.id) return foreign;
        uint64_t in = off % unit_;
        bool block_start = in % m.block_bytes == 0 && in / m.block_bytes < m.per_unit;
        // A block slot of the model's own slab that is not allocated: exactly a double free.
        return block_start ? errc_bit(KvErrc::DoubleFree) : either;
      }
      case kStatic:
        // The partition never changes hands while the model lives.
        return m.ever.count(id) ? errc_bit(KvErrc::DoubleFree) : either;
      default:
        return either;
    }
  }

  // free(model, ids) where some id is bad (or repeated); returns false when all were valid, in
  // which case nothing was called.
  bool probe_free(size_t i, const std::vector<BlockId>& ids) {
    const Model& m = models_[i];
    uint32_t codes = 0;
    std::unordered_set<BlockId> seen;
    for (BlockId id : ids) {
      bool first = seen.insert(id).second;
      uint32_t c = classify(m, id);
      if (c == 0 && !first) c = errc_bit(KvErrc::DoubleFree);  // named twice in one call
      codes |= c;
    }
    if (codes == 0) return false;
    ModelId mid = m.id;
    begin("invalid free", mid, ids.size());
    op_ids_ = &ids;
    expect_error(codes, "free", [&] { pool_->free(mid, ids.data(), ids.size()); });
    // The valid ids in the call must still be live where they were.
    for (BlockId id : ids) {
      if (m.is_live(id)) expect_offset(m, id);
    }
    return true;
  }

  // block_offset of an id that is not a live block: throws like free().
  bool probe_offset(size_t i, BlockId id) {
    const Model& m = models_[i];
    uint32_t codes = classify(m, id);
    if (codes == 0) return false;
    ModelId mid = m.id;
    begin("block_offset of a bad id (n = id)", mid, id);
    expect_error(codes, "block_offset", [&] { (void)pool_->block_offset(mid, id); });
    return true;
  }

  // Every entry point with a model id that is not registered (never issued, or removed): `which`
  // modulo kUnknownModelProbes picks the call.
  static constexpr uint64_t kUnknownModelProbes = 8;
  void probe_unknown_model(ModelId id, uint64_t which) {
    begin("call #n on an unknown model", id, which % kUnknownModelProbes);
    const uint32_t unknown = errc_bit(KvErrc::UnknownModel);
    BlockId zero = 0;
    switch (which % kUnknownModelProbes) {
      case 0:
        expect_error(unknown, "alloc", [&] {
          std::vector<BlockId> out;
          (void)pool_->alloc(id, 1, &out);
        });
        break;
      case 1: expect_error(unknown, "free", [&] { pool_->free(id, &zero, 1); }); break;
      case 2: expect_error(unknown, "set_live_tokens", [&] { pool_->set_live_tokens(id, 0); }); break;
      case 3: expect_error(unknown, "available_blocks", [&] { (void)pool_->available_blocks(id); }); break;
      case 4: expect_error(unknown, "layout", [&] { (void)pool_->layout(id); }); break;
      case 5: expect_error(unknown, "block_offset", [&] { (void)pool_->block_offset(id, 0); }); break;
      case 6: expect_error(unknown, "remove_model", [&] { pool_->remove_model(id); }); break;
      default: probe_compact_unknown(id); break;
    }
  }

  // compact() on an unregistered id. kv-slab looks the id up like every other call and must throw
  // UnknownModel. The baselines (static, unified, paged) inherit KvPool::compact's default, which
  // returns 0 without looking the id up at all, so there the harness accepts either answer:
  // UnknownModel, or a no-op (0 released, nothing appended to `moves`); both must leave the pool
  // exactly as it was. (The contract in kv_pool.h does not say the baselines must reject the id;
  // if that is ever decided, make this strict like kv-slab.)
  void probe_compact_unknown(ModelId id) {
    const uint32_t unknown = errc_bit(KvErrc::UnknownModel);
    const uint64_t max_slabs = op_count_ % 3 == 0 ? UINT64_MAX : 1 + op_count_ % 3;
    if (policy_ == kSlabPolicy) {
      expect_error(unknown, "compact", [&] {
        std::vector<BlockMove> moves;
        (void)pool_->compact(id, max_slabs, &moves);
        if (!moves.empty()) fail("compact on an unknown model appended " + std::to_string(moves.size()) + " moves");
      });
      return;
    }
    PoolStats before = pool_->stats();
    std::vector<BlockMove> moves{{1, 2}};
    try {
      uint64_t released = pool_->compact(id, max_slabs, &moves);
      expect_eq(released, uint64_t{0}, "compact on an unknown model (baseline no-op) released");
    } catch (const KvError& e) {
      if (e.code() != KvErrc::UnknownModel) {
        fail(std::string("compact on an unknown model threw ") + errc_code(e.code()) + " (" + e.what() +
             "); expected UnknownModel or a no-op");
      }
    } catch (const std::exception& e) {
      fail(std::string("compact on an unknown model threw a non-KvError: ") + e.what());
    }
    if (moves.size() != 1 || moves[0].from != 1 || moves[0].to != 2) {
      fail("compact on an unknown model touched the moves vector (size " + std::to_string(moves.size()) + ")");
    }
    expect_unchanged(before, "compact on an unknown model");
    check_all();
  }

  // ------------------------------------------------------------------------------------------
  // Whole-pool checks.

  // After every op: the accounting identities, the reference's counts, available_blocks.
  void check_all() {
    PoolStats s = pool_->stats();
    expect_eq(s.policy, config_.policy, "stats.policy");
    expect_eq(s.pool_bytes, config_.pool_bytes, "stats.pool_bytes");
    expect_eq(s.models.size(), models_.size(), "stats.models.size()");
    uint64_t held = 0, ltb = 0, internal = 0, external = 0, tail = 0;
    for (const ModelStats& ms : s.models) {
      const Model* m = find(ms.id);
      if (!m) fail("stats lists model " + std::to_string(ms.id) + ", which the reference does not hold");
      check_model(ms, *m);
      held += ms.held_bytes;
      ltb += ms.live_token_bytes;
      internal += ms.internal_bytes;
      external += ms.external_bytes;
      tail += ms.tail_bytes;
    }
    expect_eq(s.held_bytes, held, "pool held_bytes = sum over models");
    expect_eq(s.live_token_bytes, ltb, "pool live_token_bytes = sum over models");
    expect_eq(s.internal_bytes, internal, "pool internal_bytes = sum over models");
    expect_eq(s.external_bytes, external, "pool external_bytes = sum over models");
    expect_eq(s.tail_bytes, tail, "pool tail_bytes = sum over models");
    expect_eq(s.free_bytes + s.unusable_bytes + s.held_bytes, s.pool_bytes,
              [&] {
                return "pool_bytes = free + unusable + held (free=" + std::to_string(s.free_bytes) +
                       " unusable=" + std::to_string(s.unusable_bytes) + " held=" + std::to_string(s.held_bytes) + ")";
              });
    const uint64_t pool = config_.pool_bytes;
    switch (policy_) {
      case kSlabPolicy:
      case kPaged:
        expect_eq(s.slab_bytes, unit_, "stats.slab_bytes");
        expect_eq(s.num_slabs, num_units_, "stats.num_slabs");
        expect_eq(s.free_slabs, free_units(), "stats.free_slabs = num_slabs - slabs/pages held");
        expect_eq(s.free_bytes, s.free_slabs * unit_, "stats.free_bytes = free_slabs * slab_bytes");
        expect_eq(s.unusable_bytes, pool - num_units_ * unit_, "stats.unusable_bytes = pool % slab_bytes");
        if (policy_ == kPaged) {
          expect_eq(s.map_calls, map_calls_, "paged map_calls = pages mapped + pages unmapped");
          expect_eq(s.map_cost_ns, map_calls_ * config_.map_cost_ns, "paged map_cost_ns = map_calls * cost");
        }
        break;
      case kUnified:
        expect_eq(s.slab_bytes, unit_, "stats.slab_bytes (the unified block)");
        expect_eq(s.num_slabs, num_units_, "stats.num_slabs (unified blocks)");
        expect_eq(s.free_slabs, num_units_ - total_live(), "stats.free_slabs = blocks - live blocks");
        expect_eq(s.free_bytes, s.free_slabs * unit_, "stats.free_bytes");
        expect_eq(s.unusable_bytes, pool - num_units_ * unit_, "stats.unusable_bytes = pool % block_bytes");
        break;
      case kStatic: {
        uint64_t parts = 0;
        for (const Model& m : models_) parts += m.options.partition_bytes;
        expect_eq(s.free_bytes + s.unusable_bytes, pool - parts, "static free + unusable = pool - partitions");
        break;
      }
    }
    check_available(s);
  }

  // Less often (it is linear in live blocks): every live block is still where it was handed out,
  // and a static model's blocks all fit inside one partition.
  void check_deep() {
    begin("deep check");
    for (const Model& m : models_) {
      uint64_t lo = UINT64_MAX, hi = 0;
      for (BlockId id : m.live) {
        uint64_t off = expect_offset(m, id);
        lo = std::min(lo, off);
        hi = std::max(hi, off + m.block_bytes);
      }
      if (policy_ == kStatic && !m.live.empty() && hi - lo > m.options.partition_bytes) {
        fail("static model " + std::to_string(m.id) + "'s blocks span " + std::to_string(hi - lo) +
             " bytes, more than its partition of " + std::to_string(m.options.partition_bytes));
      }
    }
    check_all();
  }

  // The pool once every model is gone must be exactly as it started: nothing leaked.
  void check_empty() {
    begin("check empty pool");
    if (!models_.empty()) fail("harness: check_empty with models registered");
    PoolStats s = pool_->stats();
    expect_eq(s.free_bytes + s.unusable_bytes, s.pool_bytes, "empty pool: free + unusable = pool_bytes");
    expect_eq(s.held_bytes, uint64_t{0}, "empty pool: held_bytes");
    if (policy_ != kStatic) expect_eq(s.free_slabs, s.num_slabs, "empty pool: free_slabs = num_slabs");
    check_all();
  }

  [[noreturn]] void fail(const std::string& what) const {
    std::string op = op_kind_;
    if (op_model_ >= 0) op += " model " + std::to_string(op_model_) + " n=" + std::to_string(op_n_);
    if (op_ids_) op += " ids " + list_ids(*op_ids_);
    if (!op_extra_.empty()) op += " " + op_extra_;
    std::string who = ctx_model_ >= 0 ? "model " + std::to_string(ctx_model_) + ": " : "";
    fail_("[" + config_.policy + " pool_bytes=" + std::to_string(config_.pool_bytes) + "] op #" +
          std::to_string(op_count_) + " (" + op + "): " + who + what);
    std::fprintf(stderr, "kv_pool_harness: fail handler returned\n");
    std::abort();
  }

 private:
  enum PolicyKind { kSlabPolicy, kStatic, kUnified, kPaged };

  struct Range {
    uint64_t end;
    ModelId model;
  };

  // Cheap on purpose (it runs on every call): the description is formatted only on failure.
  void begin(const char* kind, int64_t model = -1, uint64_t n = 0) {
    ++op_count_;
    op_kind_ = kind;
    op_model_ = model;
    op_n_ = n;
    op_ids_ = nullptr;
    op_extra_.clear();
  }

  Model* find(ModelId id) {
    for (Model& m : models_) {
      if (m.id == id) return &m;
    }
    return nullptr;
  }

  // `what` is a string literal or a callable building the message, so passing checks allocate
  // nothing (they run thousands of times per fuzz input).
  template <class T, class What>
  void expect_eq(const T& got, const T& want, What&& what) const {
    if (!(got == want)) fail(message(what) + ": got " + to_str(got) + ", expected " + to_str(want));
  }
  static std::string message(const char* s) { return s; }
  template <class F>
  static auto message(F&& f) -> decltype(std::string(f())) {
    return f();
  }
  static std::string to_str(const std::string& s) { return "\"" + s + "\""; }
  template <class T>
  static std::string to_str(const T& v) {
    return std::to_string(v);
  }

  static std::string describe(const ModelOptions& o) {
    const KvGeometry& g = o.geometry;
    return "\"" + o.name + "\" {tpb " + std::to_string(g.tokens_per_block) + ", layers " +
           std::to_string(g.num_layers) + ", heads " + std::to_string(g.num_kv_heads) + ", dim " +
           std::to_string(g.head_dim) + ", fmt " + std::to_string(static_cast<int>(g.format)) + ", scale " +
           std::to_string(g.scale_bytes) + "} reserve " + std::to_string(o.reserve_blocks) + " partition " +
           std::to_string(o.partition_bytes);
  }
  static std::string list_ids(const std::vector<BlockId>& ids) {
    std::string s = "[";
    for (size_t k = 0; k < ids.size() && k < 12; ++k) s += (k ? "," : "") + std::to_string(ids[k]);
    if (ids.size() > 12) s += ",... (" + std::to_string(ids.size()) + ")";
    return s + "]";
  }

  static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

  // kv-slab compaction on used counts alone (slab -> live blocks, every held slab non-empty): the
  // slabs it must release and the blocks it must move.
  static void simulate_compact(const std::map<uint64_t, uint32_t>& units, uint64_t bps, uint64_t max_slabs,
                               uint64_t* released, uint64_t* moved) {
    std::multiset<uint64_t> partial;
    uint64_t held = units.size(), live = 0;
    for (auto& [slab, n] : units) {
      live += n;
      if (n < bps) partial.insert(n);
    }
    *released = *moved = 0;
    while (*released < max_slabs && !partial.empty()) {
      const uint64_t used = *partial.begin();
      if (held * bps - live - (bps - used) < used) break;
      partial.erase(partial.begin());
      for (uint64_t k = 0; k < used && !partial.empty(); ++k) {
        auto fullest = std::prev(partial.end());  // the free slots counted above are in partial slabs
        uint64_t n = *fullest + 1;
        partial.erase(fullest);
        if (n < bps) partial.insert(n);
      }
      held--;
      ++*released;
      *moved += used;
    }
  }

  // kv-slab: slabs a reserved model may still claim beyond the ones it holds.
  uint64_t outstanding(const Model& m) const {
    if (m.options.reserve_blocks == 0) return 0;
    uint64_t need = ceil_div(m.options.reserve_blocks, m.per_unit);
    return need > m.units.size() ? need - m.units.size() : 0;
  }

  // Every fault an add_model call has contributes its code to `must` (the policy may check them in
  // any order); `may` holds codes for refusals the contract leaves to the pool's judgement.
  void expect_add(const ModelOptions& o, uint32_t* must, uint32_t* may) const {
    *must = *may = 0;
    if (o.name.empty()) *must |= errc_bit(KvErrc::InvalidArgument);
    for (const Model& m : models_) {
      if (!o.name.empty() && m.options.name == o.name) *must |= errc_bit(KvErrc::DuplicateModel);
    }
    if (policy_ == kStatic && o.partition_bytes == 0) *must |= errc_bit(KvErrc::InvalidArgument);
    if (!validate(o.geometry).empty()) {
      *must |= errc_bit(KvErrc::InvalidGeometry);
      return;  // no block size to check anything else against
    }
    const uint64_t bb = make_layout(o.geometry).block_bytes;
    const uint32_t oversize = errc_bit(KvErrc::OversizeGeometry);
    switch (policy_) {
      case kSlabPolicy: {
        uint64_t tail = bb <= unit_ ? unit_ % bb : 0;
        if (bb > unit_ || static_cast<double>(tail) > config_.max_tail_fraction * static_cast<double>(unit_)) {
          *must |= oversize;
          return;  // no blocks-per-slab to size a reserve with
        }
        if (o.reserve_blocks == 0) return;
        uint64_t need = ceil_div(o.reserve_blocks, unit_ / bb);
        uint64_t free = free_units();
        // A new model holds no slab, so it needs `need` free slabs outright.
        if (need > free) {
          *must |= errc_bit(KvErrc::ReserveUnavailable);
          return;
        }
        // Even if no other reserved model had claimed any of its slabs yet there would be room: the
        // reserve can be guaranteed, so it must be granted.
        uint64_t others = 0;
        for (const Model& m : models_) {
          if (m.options.reserve_blocks) others += ceil_div(m.options.reserve_blocks, m.per_unit);
        }
        if (need + others > free) *may |= errc_bit(KvErrc::ReserveUnavailable);
        return;
      }
      case kUnified:
        if (bb > unit_) *must |= oversize;
        return;
      case kStatic: {
        if (o.partition_bytes == 0) return;
        if (o.partition_bytes < bb) {
          *must |= oversize;
          return;
        }
        uint64_t parts = 0;
        for (const Model& m : models_) parts += m.options.partition_bytes;
        // No room for the partition is a bad option (InvalidArgument). With enough free bytes in
        // total it may still be refused: they can be split between holes.
        if (parts + o.partition_bytes > config_.pool_bytes) {
          *must |= errc_bit(KvErrc::InvalidArgument);
        } else {
          *may |= errc_bit(KvErrc::InvalidArgument);
        }
        return;
      }
      case kPaged:
        if (bb > config_.pool_bytes) *may |= oversize;
        return;
    }
  }

  // Records a block alloc() just returned, checking where it lives.
  void add_block(Model& m, BlockId id) {
    uint64_t off = 0;
    try {
      off = pool_->block_offset(m.id, id);
    } catch (const std::exception& e) {
      fail("block_offset of freshly allocated id " + std::to_string(id) + " threw: " + e.what());
    }
    auto where = [&] { return "block " + std::to_string(id) + " at offset " + std::to_string(off); };
    if (physical()) {
      if (off != uint64_t{id} * kBlockGranule) fail(where() + ": physical ids are offset / 64");
      if (off + m.block_bytes > config_.pool_bytes) fail(where() + " runs past the pool end");
      auto next = ranges_.lower_bound(off);
      if (next != ranges_.end() && next->first < off + m.block_bytes) {
        fail(where() + " overlaps a block of model " + std::to_string(next->second.model) + " at " +
             std::to_string(next->first));
      }
      if (next != ranges_.begin()) {
        auto prev = std::prev(next);
        if (prev->second.end > off) {
          fail(where() + " overlaps a block of model " + std::to_string(prev->second.model) + " at " +
               std::to_string(prev->first));
        }
      }
      ranges_[off] = Range{off + m.block_bytes, m.id};
    }
    switch (policy_) {
      case kSlabPolicy: {
        uint64_t slab = off / unit_, in = off % unit_;
        if (slab >= num_units_) fail(where() + " is past the last slab");
        if (in % m.block_bytes != 0 || in / m.block_bytes >= m.per_unit) {
          fail(where() + " is not a block slot of its slab (slot size " + std::to_string(m.block_bytes) + ")");
        }
        auto owner = slab_owner_.find(slab);
        if (owner != slab_owner_.end() && owner->second != m.id) {
          fail(where() + " is in slab " + std::to_string(slab) + ", which holds model " +
               std::to_string(owner->second) + "'s blocks");
        }
        slab_owner_[slab] = m.id;
        m.units[slab]++;
        break;
      }
      case kUnified:
        if (off % unit_ != 0) fail(where() + " is not on a unified block boundary");
        break;
      case kStatic:
        m.ever.insert(id);
        break;
      case kPaged: {
        // Blocks are packed in the model's virtual range with no tail.
        if (off != uint64_t{id} * m.block_bytes) fail(where() + ": paged offsets are id * block_bytes");
        for (uint64_t p = off / unit_; p <= (off + m.block_bytes - 1) / unit_; ++p) {
          if (m.units[p]++ == 0) map_calls_++;
        }
        break;
      }
    }
    m.index[id] = m.live.size();
    m.live.push_back(id);
  }

  void remove_block(Model& m, BlockId id) {
    auto it = m.index.find(id);
    if (it == m.index.end()) fail("harness: removing a block the reference does not hold");
    size_t pos = it->second;
    BlockId last = m.live.back();
    m.live[pos] = last;
    m.index[last] = pos;
    m.live.pop_back();
    m.index.erase(id);
    if (m.freed.size() >= 32) m.freed.erase(m.freed.begin());
    m.freed.push_back(id);
    switch (policy_) {
      case kSlabPolicy: {
        uint64_t off = uint64_t{id} * kBlockGranule;
        ranges_.erase(off);
        auto u = m.units.find(off / unit_);
        if (--u->second == 0) {
          m.units.erase(u);
          slab_owner_.erase(off / unit_);
        }
        break;
      }
      case kStatic:
      case kUnified: ranges_.erase(uint64_t{id} * kBlockGranule); break;
      case kPaged: {
        uint64_t off = uint64_t{id} * m.block_bytes;
        for (uint64_t p = off / unit_; p <= (off + m.block_bytes - 1) / unit_; ++p) {
          auto u = m.units.find(p);
          if (--u->second == 0) {
            m.units.erase(u);
            map_calls_++;
          }
        }
        break;
      }
    }
  }

  uint64_t expect_offset(const Model& m, BlockId id) {
    uint64_t want = physical() ? uint64_t{id} * kBlockGranule : uint64_t{id} * m.block_bytes;
    uint64_t off = 0;
    try {
      off = pool_->block_offset(m.id, id);
    } catch (const std::exception& e) {
      fail("block_offset of live id " + std::to_string(id) + " of model " + std::to_string(m.id) + " threw: " + e.what());
    }
    if (off != want) {
      fail("live block " + std::to_string(id) + " moved: offset " + std::to_string(off) + ", expected " +
           std::to_string(want));
    }
    return off;
  }

  // kv-slab: a multi-block alloc takes blocks one at a time from the fullest partial slab, so the
  // slabs it touched are a prefix of the partial slabs ordered by used count (ties in any order),
  // each filled before the next is started, and fresh slabs only once every partial one is full.
  void check_fullest_first(const Model& m, const std::map<uint64_t, uint32_t>& before) {
    const uint64_t bps = m.per_unit;
    std::map<uint64_t, uint32_t> added;
    for (auto& [slab, n] : m.units) {
      auto b = before.find(slab);
      uint32_t was = b == before.end() ? 0 : b->second;
      if (n > was) added[slab] = n - was;
    }
    bool took_fresh = false;
    uint32_t min_touched = UINT32_MAX;  // least used-before among touched partial slabs
    int partial_left_unfilled = 0, fresh_left_unfilled = 0;
    for (auto& [slab, n] : added) {
      auto b = before.find(slab);
      uint32_t after = m.units.at(slab);
      if (b == before.end()) {
        took_fresh = true;
        if (after < bps) fresh_left_unfilled++;
      } else {
        min_touched = std::min(min_touched, b->second);
        if (after < bps) partial_left_unfilled++;
      }
    }
    std::string ctx = " (slab used counts before:";
    for (auto& [slab, n] : before) ctx += " " + std::to_string(slab) + ":" + std::to_string(n);
    ctx += "; added:";
    for (auto& [slab, n] : added) ctx += " " + std::to_string(slab) + ":+" + std::to_string(n);
    ctx += "; blocks/slab " + std::to_string(bps) + ")";
    if (partial_left_unfilled > 1 || fresh_left_unfilled > 1) {
      fail("alloc spread blocks over several slabs without filling them" + ctx);
    }
    for (auto& [slab, n] : before) {
      if (n >= bps || added.count(slab)) continue;  // full, or touched
      if (took_fresh) fail("alloc carved a fresh slab while slab " + std::to_string(slab) + " was partial" + ctx);
      if (n > min_touched) {
        fail("alloc skipped partial slab " + std::to_string(slab) + " (" + std::to_string(n) +
             " used) for a less full one" + ctx);
      }
    }
    for (auto& [slab, n] : added) {
      auto b = before.find(slab);
      if (b != before.end() && m.units.at(slab) < bps && b->second != min_touched) {
        fail("alloc left a fuller partial slab unfilled while taking from a less full one" + ctx);
      }
    }
  }

  void check_model(const ModelStats& ms, const Model& m) const {
    ctx_model_ = m.id;
    const uint64_t live = m.live.size();
    const uint64_t ltb = m.tokens * m.layout.token_bytes;
    expect_eq(ms.name, m.options.name, "name");
    expect_eq(ms.live_blocks, live, "live_blocks");
    expect_eq(ms.live_tokens, m.tokens, "live_tokens");
    expect_eq(ms.token_bytes, m.layout.token_bytes, "token_bytes");
    expect_eq(ms.live_token_bytes, ltb, "live_token_bytes");
    expect_eq(ms.block_bytes, m.block_bytes, "block_bytes");
    expect_eq(ms.reserve_blocks, m.options.reserve_blocks, "reserve_blocks");
    expect_eq(ms.geometry.num_layers, m.options.geometry.num_layers, "geometry.num_layers");
    expect_eq(ms.geometry.head_dim, m.options.geometry.head_dim, "geometry.head_dim");
    expect_eq(ms.held_bytes, ms.live_token_bytes + ms.internal_bytes + ms.external_bytes + ms.tail_bytes,
              [&] {
                return "held = live_token + internal + external + tail (live_token=" +
                       std::to_string(ms.live_token_bytes) + " internal=" + std::to_string(ms.internal_bytes) +
                       " external=" + std::to_string(ms.external_bytes) + " tail=" + std::to_string(ms.tail_bytes) +
                       ")";
              });
    // Internal waste is defined per allocated block whatever the policy.
    expect_eq(ms.internal_bytes, live * m.block_bytes - ltb, "internal = live blocks * block_bytes - live token bytes");
    expect_eq(ms.alloc_calls, m.alloc_calls, "alloc_calls");
    expect_eq(ms.blocks_allocated, m.blocks_allocated, "blocks_allocated");
    expect_eq(ms.free_calls, m.free_calls, "free_calls");
    expect_eq(ms.blocks_freed, m.blocks_freed, "blocks_freed");
    expect_eq(ms.oom_count, m.oom_count, "oom_count");
    expect_eq(ms.blocks_moved, m.blocks_moved, "blocks_moved = moves compact() reported");
    expect_eq(ms.peak_live_blocks, m.peak_live_blocks, "peak_live_blocks");
    expect_eq(ms.peak_live_token_bytes, m.peak_live_token_bytes, "peak_live_token_bytes");
    const uint64_t units = m.units.size();
    switch (policy_) {
      case kSlabPolicy:
        expect_eq(ms.blocks_per_slab, m.per_unit, "blocks_per_slab");
        expect_eq(ms.slabs_held, units, "slabs_held = slabs holding its live blocks");
        expect_eq(ms.held_bytes, units * unit_, "held_bytes = slabs_held * slab_bytes");
        expect_eq(ms.tail_bytes, units * (unit_ % m.block_bytes), "tail_bytes = slabs_held * (slab % block)");
        expect_eq(ms.external_bytes, (units * m.per_unit - live) * m.block_bytes,
                  "external_bytes = free slots in its slabs * block_bytes");
        break;
      case kStatic:
        expect_eq(ms.blocks_per_slab, m.per_unit, "blocks_per_slab (per partition)");
        expect_eq(ms.held_bytes, m.options.partition_bytes, "held_bytes = partition_bytes");
        expect_eq(ms.tail_bytes, m.options.partition_bytes - m.per_unit * m.block_bytes, "tail_bytes");
        expect_eq(ms.external_bytes, (m.per_unit - live) * m.block_bytes, "external_bytes");
        break;
      case kUnified:
        expect_eq(ms.held_bytes, live * unit_, "held_bytes = live * unified block");
        expect_eq(ms.external_bytes, uint64_t{0}, "external_bytes (unified has none)");
        expect_eq(ms.tail_bytes, uint64_t{0}, "tail_bytes (unified has none)");
        break;
      case kPaged:
        expect_eq(ms.slabs_held, units, "slabs_held = pages touched by its live blocks");
        expect_eq(ms.held_bytes, units * unit_, "held_bytes = mapped pages * page_bytes");
        break;
    }
    ctx_model_ = -1;
  }

  void check_available(const PoolStats& s) const {
    uint64_t all_outstanding = 0;
    for (const Model& m : models_) all_outstanding += outstanding(m);
    if (policy_ == kSlabPolicy && all_outstanding > s.free_slabs) {
      fail("reserves promise " + std::to_string(all_outstanding) + " more slabs but only " +
           std::to_string(s.free_slabs) + " are free");
    }
    for (const Model& m : models_) {
      uint64_t a = 0;
      try {
        a = pool_->available_blocks(m.id);
      } catch (const std::exception& e) {
        fail(std::string("available_blocks threw: ") + e.what());
      }
      ctx_model_ = m.id;
      const uint64_t live = m.live.size();
      switch (policy_) {
        case kSlabPolicy: {
          // Free slots in its own slabs, plus whole free slabs not promised to other models.
          uint64_t own_free = m.units.size() * m.per_unit - live;
          uint64_t others = all_outstanding - outstanding(m);
          expect_eq(a, own_free + (s.free_slabs - others) * m.per_unit,
                    "available_blocks = own free slots + (free slabs - other models' outstanding reserve) * blocks/slab");
          break;
        }
        case kStatic: expect_eq(a, m.per_unit - live, "available_blocks = partition blocks - live"); break;
        case kUnified: expect_eq(a, num_units_ - total_live(), "available_blocks = free unified blocks"); break;
        case kPaged:
          // With nothing live the model packs blocks from virtual offset 0 into any free pages.
          if (live == 0) expect_eq(a, s.free_slabs * unit_ / m.block_bytes, "available_blocks of an empty model = free pages * page / block");
          break;
      }
      if (live < m.options.reserve_blocks && a < m.options.reserve_blocks - live) {
        fail("available_blocks = " + std::to_string(a) + " breaks its reserve of " +
             std::to_string(m.options.reserve_blocks) + " with " + std::to_string(live) + " live");
      }
    }
    ctx_model_ = -1;
  }

  static bool same_model_stats(const ModelStats& a, const ModelStats& b) {
    return a.id == b.id && a.name == b.name && a.block_bytes == b.block_bytes && a.token_bytes == b.token_bytes &&
           a.blocks_per_slab == b.blocks_per_slab && a.reserve_blocks == b.reserve_blocks &&
           a.live_blocks == b.live_blocks && a.live_tokens == b.live_tokens && a.slabs_held == b.slabs_held &&
           a.held_bytes == b.held_bytes && a.live_token_bytes == b.live_token_bytes &&
           a.internal_bytes == b.internal_bytes && a.external_bytes == b.external_bytes &&
           a.tail_bytes == b.tail_bytes && a.peak_live_blocks == b.peak_live_blocks &&
           a.peak_held_bytes == b.peak_held_bytes && a.peak_live_token_bytes == b.peak_live_token_bytes &&
           a.alloc_calls == b.alloc_calls && a.blocks_allocated == b.blocks_allocated &&
           a.free_calls == b.free_calls && a.blocks_freed == b.blocks_freed && a.oom_count == b.oom_count &&
           a.blocks_moved == b.blocks_moved;
  }

  // Empty when equal; otherwise names the first fields that differ.
  static std::string stats_diff(const PoolStats& a, const PoolStats& b) {
    std::string d;
    auto field = [&](const char* name, uint64_t x, uint64_t y) {
      if (x != y) d += std::string(" ") + name + " " + std::to_string(x) + "->" + std::to_string(y);
    };
    field("free_bytes", a.free_bytes, b.free_bytes);
    field("unusable_bytes", a.unusable_bytes, b.unusable_bytes);
    field("held_bytes", a.held_bytes, b.held_bytes);
    field("free_slabs", a.free_slabs, b.free_slabs);
    field("num_slabs", a.num_slabs, b.num_slabs);
    field("live_token_bytes", a.live_token_bytes, b.live_token_bytes);
    field("internal_bytes", a.internal_bytes, b.internal_bytes);
    field("external_bytes", a.external_bytes, b.external_bytes);
    field("tail_bytes", a.tail_bytes, b.tail_bytes);
    field("peak_held_bytes", a.peak_held_bytes, b.peak_held_bytes);
    field("peak_live_token_bytes", a.peak_live_token_bytes, b.peak_live_token_bytes);
    field("map_calls", a.map_calls, b.map_calls);
    field("models", a.models.size(), b.models.size());
    if (a.models.size() == b.models.size()) {
      for (size_t k = 0; k < a.models.size(); ++k) {
        const ModelStats& x = a.models[k];
        const ModelStats& y = b.models[k];
        if (same_model_stats(x, y)) continue;
        d += " model " + std::to_string(x.id) + ":";
        field("id", x.id, y.id);
        field("live_blocks", x.live_blocks, y.live_blocks);
        field("live_tokens", x.live_tokens, y.live_tokens);
        field("slabs_held", x.slabs_held, y.slabs_held);
        field("held_bytes", x.held_bytes, y.held_bytes);
        field("external_bytes", x.external_bytes, y.external_bytes);
        field("alloc_calls", x.alloc_calls, y.alloc_calls);
        field("oom_count", x.oom_count, y.oom_count);
        field("free_calls", x.free_calls, y.free_calls);
        field("blocks_freed", x.blocks_freed, y.blocks_freed);
        field("peak_live_blocks", x.peak_live_blocks, y.peak_live_blocks);
        field("peak_held_bytes", x.peak_held_bytes, y.peak_held_bytes);
        field("blocks_moved", x.blocks_moved, y.blocks_moved);
        if (x.name != y.name) d += " name";
      }
    }
    return d;
  }

  void expect_unchanged(const PoolStats& before, const std::string& what) const {
    PoolStats after = pool_->stats();
    std::string d = stats_diff(before, after);
    if (!d.empty()) fail(what + " changed the pool:" + d);
  }

  template <class Op>
  void expect_error(uint32_t codes, const std::string& what, Op&& op) {
    PoolStats before = pool_->stats();
    try {
      op();
    } catch (const KvError& e) {
      if (!(codes & errc_bit(e.code()))) {
        fail(what + " threw " + errc_code(e.code()) + " (" + e.what() + "); expected " + errc_list(codes));
      }
      expect_unchanged(before, what + " (refused)");
      check_all();
      return;
    } catch (const std::exception& e) {
      fail(what + " threw a non-KvError: " + e.what());
    }
    fail(what + " did not throw; expected " + errc_list(codes));
  }

  PoolConfig config_;
  FailFn fail_;
  PolicyKind policy_ = kSlabPolicy;
  std::unique_ptr<KvPool> pool_;
  uint64_t unit_ = 0;       // slab (kv-slab), unified block, page (paged)
  uint64_t num_units_ = 0;
  std::vector<Model> models_;
  std::vector<Removed> removed_;
  std::vector<std::string> removed_names_;
  std::unordered_set<ModelId> issued_;
  int64_t max_issued_ = -1;
  std::map<uint64_t, Range> ranges_;                  // physical: live block offset -> range
  std::unordered_map<uint64_t, ModelId> slab_owner_;  // kv-slab: slab -> the model with live blocks there
  uint64_t map_calls_ = 0;                            // paged: pages mapped + unmapped so far
  uint64_t compact_calls_ = 0, compact_released_ = 0, compact_moved_ = 0;
  size_t op_count_ = 0;
  // The call in progress, for failure messages.
  const char* op_kind_ = "";
  int64_t op_model_ = -1;
  uint64_t op_n_ = 0;
  const std::vector<BlockId>* op_ids_ = nullptr;
  std::string op_extra_;
  mutable int64_t ctx_model_ = -1;  // the model a check is about, for failure messages
};

// ----------------------------------------------------------------------------------------------
// Random op sequences. `Src` supplies choices: below(bound) in [0, bound) and exhausted(); the
// property tests use SplitMix, the fuzzer the bytes it was given.

// k distinct live blocks of `m` in random order.
template <class Src>
std::vector<BlockId> pick_live(const PoolHarness::Model& m, Src& src, size_t k) {
  const size_t n = m.live.size();
  k = std::min(k, n);
  std::vector<BlockId> ids;
  if (k * 4 <= n) {
    // Few of many: draw positions, skipping repeats, without copying the whole list.
    std::vector<size_t> taken;
    while (ids.size() < k) {
      size_t pos = src.below(n);
      auto is_taken = [&](size_t p) { return std::find(taken.begin(), taken.end(), p) != taken.end(); };
      if (is_taken(pos)) {
        if (!src.exhausted()) continue;
        // A spent source keeps returning 0: take the first free position instead.
        pos = 0;
        while (is_taken(pos)) ++pos;
      }
      taken.push_back(pos);
      ids.push_back(m.live[pos]);
    }
    return ids;
  }
  ids = m.live;
  for (size_t j = 0; j < k; ++j) std::swap(ids[j], ids[j + src.below(n - j)]);
  ids.resize(k);
  return ids;
}

template <class Src>
ModelOptions random_options(PoolHarness& h, Src& src, uint64_t* name_counter) {
  ModelOptions o;
  o.name = "m" + std::to_string((*name_counter)++);
  const auto& valid = valid_geometries();
  o.geometry = valid[src.below(valid.size())];
  switch (src.below(24)) {
    case 0: o.name = ""; break;
    case 1:
      if (h.num_models()) o.name = h.model_at(src.below(h.num_models())).options.name;  // duplicate
      break;
    case 2:
      if (!h.removed_names().empty()) o.name = h.removed_names()[src.below(h.removed_names().size())];
      break;
    case 3: o.geometry = invalid_geometries()[src.below(invalid_geometries().size())]; break;
    case 4:
    case 5: o.geometry = oversize_geometries()[src.below(oversize_geometries().size())]; break;
    default: break;
  }
  uint64_t bb = validate(o.geometry).empty() ? make_layout(o.geometry).block_bytes : kMiB;
  if (h.is_slab() && bb <= h.unit_bytes()) {
    uint64_t bps = h.unit_bytes() / bb;
    switch (src.below(8)) {
      case 0:
      case 1: o.reserve_blocks = 1 + src.below(3 * bps); break;
      case 2: o.reserve_blocks = h.num_units() * bps + 1 + src.below(bps); break;  // more than the pool
      default: break;
    }
  }
  if (h.is_static()) {
    switch (src.below(16)) {
      case 0: o.partition_bytes = 0; break;
      case 1: o.partition_bytes = bb > kBlockGranule ? bb - kBlockGranule : bb; break;
      default:
        // A few blocks plus a tail shorter than one block, in whole granules.
        o.partition_bytes = (1 + src.below(6)) * bb + src.below(bb / kBlockGranule) * kBlockGranule;
        break;
    }
  }
  return o;
}

template <class Src>
uint32_t random_bad_id(PoolHarness& h, size_t i, Src& src) {
  const PoolHarness::Model& m = h.model_at(i);
  switch (src.below(6)) {
    case 0:
      if (!m.freed.empty()) return m.freed[src.below(m.freed.size())];
      break;
    case 1: {  // another model's live block
      size_t j = src.below(h.num_models());
      if (j != i && !h.model_at(j).live.empty()) return h.model_at(j).live[src.below(h.model_at(j).live.size())];
      break;
    }
    case 2:  // inside one of its own blocks, not at the start
      if (!m.live.empty() && m.block_bytes > kBlockGranule) {
        uint64_t step = h.physical() ? 1 + src.below(m.block_bytes / kBlockGranule - 1) : 1;
        return static_cast<uint32_t>(m.live[src.below(m.live.size())] + step);
      }
      break;
    case 3: {  // a block of a removed model
      const auto& r = h.removed();
      if (!r.empty()) {
        const auto& ids = r[src.below(r.size())].ids;
        if (!ids.empty()) return ids[src.below(ids.size())];
      }
      break;
    }
    case 4: return UINT32_MAX - static_cast<uint32_t>(src.below(4));
    default: break;
  }
  // Past the pool end (physical) or just a big number.
  return static_cast<uint32_t>(h.pool().pool_bytes() / kBlockGranule + src.below(1000));
}

template <class Src>
void random_invalid(PoolHarness& h, Src& src) {
  size_t i = src.below(h.num_models());
  switch (src.below(7)) {
    case 0: h.probe_unknown_model(h.unissued_id(src.below(3)), src.below(PoolHarness::kUnknownModelProbes)); return;
    case 1:
      if (!h.removed().empty()) {
        h.probe_unknown_model(h.removed()[src.below(h.removed().size())].id,
                              src.below(PoolHarness::kUnknownModelProbes));
        return;
      }
      h.probe_unknown_model(UINT32_MAX, src.below(PoolHarness::kUnknownModelProbes));
      return;
    case 2: {  // repeated id within one call
      const auto& m = h.model_at(i);
      if (m.live.empty()) break;
      std::vector<BlockId> ids = pick_live(m, src, 1 + src.below(4));
      const BlockId again = ids[src.below(ids.size())];
      ids.insert(ids.begin() + static_cast<std::ptrdiff_t>(src.below(ids.size() + 1)), again);
      h.probe_free(i, ids);
      return;
    }
    case 3: {  // valid ids with one bad one among them: nothing may be freed
      std::vector<BlockId> ids = pick_live(h.model_at(i), src, src.below(5));
      BlockId bad = random_bad_id(h, i, src);
      ids.insert(ids.begin() + static_cast<std::ptrdiff_t>(src.below(ids.size() + 1)), bad);
      h.probe_free(i, ids);
      return;
    }
    case 4: h.probe_offset(i, random_bad_id(h, i, src)); return;
    case 5: {
      const auto& m = h.model_at(i);
      h.set_tokens_at(i, m.capacity_tokens() + 1 + src.below(100));
      return;
    }
    default: break;
  }
  h.probe_free(i, {random_bad_id(h, i, src)});
}

template <class Src>
void random_alloc(PoolHarness& h, Src& src) {
  size_t i = src.below(h.num_models());
  uint64_t avail = h.available(i);
  uint64_t n;
  switch (src.below(16)) {
    case 10: n = 1 + src.below(64); break;
    case 11: n = avail ? avail : 1; break;  // fill it
    case 12: n = avail + 1; break;           // one too many
    case 13: n = UINT32_MAX; break;          // absurd: must be refused cheaply
    case 14: n = 1 + src.below(2 * avail + 2); break;
    default: n = 1 + src.below(8); break;
  }
  h.alloc_at(i, static_cast<uint32_t>(std::min<uint64_t>(n, UINT32_MAX)));
}

template <class Src>
void random_free(PoolHarness& h, Src& src) {
  size_t i = src.below(h.num_models());
  const auto& m = h.model_at(i);
  if (m.live.empty()) {
    random_alloc(h, src);
    return;
  }
  size_t k = src.below(10) == 0 ? m.live.size() : 1 + src.below(std::min<size_t>(8, m.live.size()));
  h.free_at(i, pick_live(m, src, k));
}

// compact with a small max_slabs (0 included: must do nothing), now and then without a limit, and
// now and then into a moves vector that already holds entries.
template <class Src>
void random_compact(PoolHarness& h, Src& src) {
  size_t i = src.below(h.num_models());
  uint64_t max_slabs = src.below(8);
  if (max_slabs == 7) max_slabs = UINT64_MAX;
  else if (max_slabs > 4) max_slabs = 1;
  size_t prefill = src.below(4) == 0 ? 1 + src.below(2) : 0;
  h.compact_at(i, max_slabs, prefill);
}

template <class Src>
void random_add(PoolHarness& h, Src& src, uint64_t* name_counter) {
  h.add_model(random_options(h, src, name_counter));
}

// Frees everything in random batches, removes every model, and checks nothing leaked.
template <class Src>
void drain(PoolHarness& h, Src& src) {
  for (size_t i = 0; i < h.num_models(); ++i) {
    while (!h.model_at(i).live.empty()) {
      const auto& m = h.model_at(i);
      h.free_at(i, pick_live(m, src, 1 + src.below(std::min<size_t>(64, m.live.size()))));
    }
  }
  h.check_deep();
  while (h.num_models()) h.remove_model_at(h.num_models() - 1);
  h.check_empty();
}

template <class Src>
void run_random_ops(PoolHarness& h, Src& src, size_t max_ops) {
  uint64_t names = 0;
  for (size_t op = 0; op < max_ops && !src.exhausted(); ++op) {
    uint64_t r = src.below(100);
    size_t n = h.num_models();
    if (n == 0 || (r < 6 && n < 6)) random_add(h, src, &names);
    else if (r < 9) h.remove_model_at(src.below(n));
    else if (r < 45) random_alloc(h, src);
    else if (r < 72) random_free(h, src);
    else if (r < 80) {
      size_t i = src.below(n);
      h.set_tokens_at(i, src.below(h.model_at(i).capacity_tokens() + 1));
    } else if (r < 86) {
      random_compact(h, src);
    } else {
      random_invalid(h, src);
    }
    if (op % 32 == 31) h.check_deep();
  }
}

}  // namespace fineserve::kv::testing
