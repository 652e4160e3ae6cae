// gpu::write_kv and gpu::paged_attention against the CPU path over the same slab: the CPU's
// ops::write_kv on a host copy of the slab and the kernel on the device copy must leave identical
// bytes, and attention over those bytes must agree with ops::attention and with a float64
// attention over the decoded stored values. Every KV format; GQA; several sequences whose blocks
// are handed out of order, partial last blocks; a prefill step (rows of one sequence attending to
// a growing context) followed by a step mixing a prefill chunk with decode rows. Each batch is
// attended both with its prefill chunks marked as spans (the tile kernel) and without (every row
// on its own), with a scratch buffer (decode rows with long contexts split over CTAs) and without.
// The prefill cases attend their spans with both tile kernels: f32 (held to 1e-5) and mma, whose
// f16 rounding of Q, K, P and V (2^-11 relative each, partly averaging out over a row) is held
// to 3e-3.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/device.h"
#include "device_buffers.h"
#include "engine/thread_pool.h"
#include "kernels/kernels.h"
#include "kv/kv_codec.h"
#include "kv/kv_geometry.h"
#include "ops/attention.h"

using namespace fineserve;
using test::download;
using test::random_floats;
using test::poisoned;
using test::upload;
using kv::KvFormat;

namespace {

constexpr uint32_t kTpb = 4, kLayers = 2, kLayer = 1;
constexpr uint8_t kSentinel = 0xA5;


// A slab in host memory (for the CPU path) and its device copy, every sequence's blocks drawn
// at random from the pool so that no block table is contiguous or ascending.
struct Cache {
  kv::KvLayout layout;
  std::vector<std::vector<uint32_t>> blocks;  // block ids per sequence
  std::vector<uint8_t> host;
  gpu::DeviceBuffer dev;

  Cache(uint32_t kv_heads, uint32_t head_dim, KvFormat f, const std::vector<uint32_t>& capacity, std::mt19937& rng) {
    kv::KvGeometry g;
    g.tokens_per_block = kTpb;
    g.num_layers = kLayers;
    g.num_kv_heads = kv_heads;
    g.head_dim = head_dim;
    g.format = f;
    g.scale_bytes = kv::default_scale_bytes(f);
    layout = kv::make_layout(g);
    uint32_t total = 2;  // spare blocks nobody owns: must stay untouched
    for (uint32_t c : capacity) total += (c + kTpb - 1) / kTpb;
    std::vector<uint32_t> ids(total);
    std::iota(ids.begin(), ids.end(), 0u);
    std::shuffle(ids.begin(), ids.end(), rng);
    size_t next = 0;
    for (uint32_t c : capacity) {
      blocks.emplace_back(ids.begin() + next, ids.begin() + next + (c + kTpb - 1) / kTpb);
      next += blocks.back().size();
    }
    host.assign(total * layout.block_bytes, kSentinel);
    dev = upload(host);
  }
};

// One step: per sequence (position before the step, tokens in it), its rows laid out in the
// order `row_order` lists the sequences.
struct Step {
  std::vector<ops::PagedSequence> cpu;
  std::vector<uint32_t> token_seq, token_pos;
  gpu::DeviceBuffer offsets, first, tseq, tpos, spans, singles, k4;
  gpu::PagedBatch batch;
  uint32_t rows = 0;

  Step(Cache& c, const std::vector<std::pair<uint32_t, uint32_t>>& seqs, const std::vector<uint32_t>& row_order) {
    std::vector<uint64_t> off;
    std::vector<uint32_t> first_block;
    cpu.resize(seqs.size());
    for (uint32_t s = 0; s < seqs.size(); ++s) {
      first_block.push_back(static_cast<uint32_t>(off.size()));
      for (uint32_t id : c.blocks[s]) {
        off.push_back(uint64_t{id} * c.layout.block_bytes);
        cpu[s].blocks.push_back(c.host.data() + uint64_t{id} * c.layout.block_bytes);
      }
      cpu[s].position = seqs[s].first;
      cpu[s].n_tokens = seqs[s].second;
    }
    uint32_t max_ctx = 0;
    std::vector<gpu::AttentionSpan> span_list;
    std::vector<uint32_t> single_list;
    for (uint32_t s : row_order) {
      cpu[s].row = rows;
      if (seqs[s].second >= gpu::kAttentionSpanMinRows) {
        span_list.push_back({rows, seqs[s].second});
        batch.max_span_rows = std::max(batch.max_span_rows, seqs[s].second);
      } else {
        for (uint32_t t = 0; t < seqs[s].second; ++t) single_list.push_back(rows + t);
      }
      for (uint32_t t = 0; t < seqs[s].second; ++t) {
        token_seq.push_back(s);
        token_pos.push_back(seqs[s].first + t);
        max_ctx = std::max(max_ctx, seqs[s].first + t + 1);
      }
      rows += seqs[s].second;
    }
    offsets = upload(off);
    first = upload(first_block);
    tseq = upload(token_seq);
    tpos = upload(token_pos);
    batch.slab = c.dev.as<uint8_t>();
    batch.block_offsets = offsets.as<uint64_t>();
    batch.seq_first_block = first.as<uint32_t>();
    batch.token_seq = tseq.as<uint32_t>();
    batch.token_pos = tpos.as<uint32_t>();
    batch.n_tokens = rows;
    batch.max_context = max_ctx;
    spans = upload(span_list);
    singles = upload(single_list);
    batch.spans = spans.as<gpu::AttentionSpan>();
    batch.n_spans = static_cast<uint32_t>(span_list.size());
    batch.single_rows = singles.as<uint32_t>();
    batch.n_single_rows = static_cast<uint32_t>(single_list.size());
    k4 = gpu::DeviceBuffer(gpu::k4_snapshot_bytes(c.layout, rows), "int4 K snapshots");
    batch.k4_snapshots = k4.as<uint8_t>();
  }

  // The same rows, every one attended on its own.
  gpu::PagedBatch without_spans() const {
    gpu::PagedBatch b = batch;
    b.spans = nullptr;
    b.single_rows = nullptr;
    b.n_spans = b.max_span_rows = b.n_single_rows = 0;
    return b;
  }
};

// Both backends store the step's K/V; the slabs must then be byte-identical. Returns the
// differing bytes.
size_t write_both(Cache& c, Step& st, const std::vector<float>& k, const std::vector<float>& v) {
  ops::write_kv(c.layout, kLayer, st.cpu, k.data(), v.data());
  gpu::DeviceBuffer dk = upload(k), dv = upload(v);
  gpu::write_kv(c.layout, kLayer, st.batch, dk.as<float>(), dv.as<float>(), nullptr);
  const std::vector<uint8_t> got = download<uint8_t>(c.dev, c.host.size());
  size_t diff = 0;
  for (size_t i = 0; i < got.size(); ++i) diff += got[i] != c.host[i];
  return diff;
}

// int4 K of row r's own block, head kvh, as it stood right after row r was written: the block
// before the step (`pre`, the host slab's bytes then) with the step's rows of that block up to r
// appended again by kv::append_k_int4. Returns the head's rows (slot 0), params after them.
std::vector<uint8_t> k4_own_block(const Cache& c, const Step& st, uint32_t r, uint32_t kvh, const std::vector<uint8_t>& pre,
                                  const std::vector<float>& k) {
  const kv::KvGeometry& g = c.layout.geometry;
  const uint32_t d = g.head_dim, pos = st.token_pos[r], seq = st.token_seq[r];
  const uint64_t codes = uint64_t{kTpb} * c.layout.row_bytes;
  const uint8_t* b = pre.data() + (st.cpu[seq].blocks[pos / kTpb] - c.host.data());
  std::vector<uint8_t> own(codes + c.layout.k_params_bytes());
  std::memcpy(own.data(), b + c.layout.row_offset(kLayer, 0, kvh, 0), codes);
  std::memcpy(own.data() + codes, b + c.layout.k_params_at(kLayer, kvh), own.size() - codes);
  const uint32_t first = std::max(pos / kTpb * kTpb, st.cpu[seq].position);
  for (uint32_t p = first; p <= pos; ++p) {
    const uint32_t row = st.cpu[seq].row + (p - st.cpu[seq].position);
    kv::append_k_int4(k.data() + (size_t{row} * g.num_kv_heads + kvh) * d, d, p % kTpb, own.data(), own.data() + codes);
  }
  return own;
}

// Attention over the stored values in float64, from the host slab's bytes (int4: each row's own
// block as k4_own_block rebuilds it).
std::vector<double> reference(const Cache& c, const Step& st, uint32_t heads, const std::vector<float>& q,
                              const std::vector<uint8_t>& pre, const std::vector<float>& k) {
  const kv::KvGeometry& g = c.layout.geometry;
  const uint32_t d = g.head_dim, group = heads / g.num_kv_heads;
  std::vector<double> out(size_t{st.rows} * heads * d);
  std::vector<float> kb(d), vb(d), step(d), minimum(d);
  for (uint32_t r = 0; r < st.rows; ++r) {
    const ops::PagedSequence& s = st.cpu[st.token_seq[r]];
    const uint32_t ctx = st.token_pos[r] + 1;
    for (uint32_t h = 0; h < heads; ++h) {
      const uint32_t kvh = h / group;
      const float* qh = q.data() + (size_t{r} * heads + h) * d;
      std::vector<double> sc(ctx);
      double mx = -INFINITY;
      const std::vector<uint8_t> own = g.format == KvFormat::Int4 ? k4_own_block(c, st, r, kvh, pre, k) : std::vector<uint8_t>();
      for (uint32_t p = 0; p < ctx; ++p) {
        const uint8_t* b = s.blocks[p / kTpb];
        const float* kr = kb.data();
        if (g.format == KvFormat::Int4) {
          const bool mine = p / kTpb == (ctx - 1) / kTpb;
          const uint8_t* rows = mine ? own.data() : b + c.layout.row_offset(kLayer, 0, kvh, 0);
          kv::load_k_params(mine ? own.data() + uint64_t{kTpb} * c.layout.row_bytes : b + c.layout.k_params_at(kLayer, kvh), d,
                            step.data(), minimum.data());
          kv::decode_k_int4(rows + (p % kTpb) * c.layout.row_bytes, step.data(), minimum.data(), d, kb.data());
        } else if (g.format == KvFormat::Fp8E4M3) {  // references fixed by slot 0: the final slab serves
          kv::load_k_refs(b + c.layout.k_params_at(kLayer, kvh), d, minimum.data());
          kv::decode_k_fp8(b + c.layout.row_offset(kLayer, 0, kvh, p % kTpb), minimum.data(), d, kb.data());
        } else {
          kr = kv::decode_row(b + c.layout.row_offset(kLayer, 0, kvh, p % kTpb),
                              b + c.layout.scale_at(kLayer, 0, kvh, p % kTpb), g.format, d, kb.data());
        }
        double dot = 0;
        for (uint32_t i = 0; i < d; ++i) dot += double(qh[i]) * kr[i];
        sc[p] = dot / std::sqrt(double(d));
        mx = std::max(mx, sc[p]);
      }
      double sum = 0;
      for (double& x : sc) sum += (x = std::exp(x - mx));
      double* o = out.data() + (size_t{r} * heads + h) * d;
      for (uint32_t p = 0; p < ctx; ++p) {
        const uint8_t* b = s.blocks[p / kTpb];
        const float* vr = kv::decode_row(b + c.layout.row_offset(kLayer, 1, kvh, p % kTpb),
                                         b + c.layout.scale_at(kLayer, 1, kvh, p % kTpb), g.format, d, vb.data());
        for (uint32_t i = 0; i < d; ++i) o[i] += sc[p] / sum * vr[i];
      }
    }
  }
  return out;
}

std::string sci(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", x);
  return buf;
}

struct Errors {
  double vs_cpu = 0, vs_f64 = 0;
  size_t not_finite = 0;
};

// Worst figures of the f32 paths (rows, f32 tiles) and of the mma tiles, which are looser.
struct Worst {
  Errors f32, mma;
  bool ran_mma = false;
};
constexpr double kF32Bound = 1e-5, kMmaBound = 3e-3;

// How the kernel is asked: with the step's spans or not, with a scratch buffer or not.
struct Mode {
  bool spans, scratch;
};
const std::vector<Mode> kAllModes = {{false, false}, {false, true}, {true, false}, {true, true}};
// Long chunks row by row are slow under the emulator, and the other cases cover that path.
const std::vector<Mode> kSpanModes = {{false, true}, {true, false}, {true, true}};

Errors attend(const Cache& c, const Step& st, uint32_t heads, const std::vector<float>& q, Mode mode,
              const std::vector<float>& cpu, const std::vector<double>& ref) {
  const size_t n = cpu.size();
  gpu::DeviceBuffer dq = upload(q), out(n * sizeof(float), "attention out");
  gpu::fill_bytes(out.as(), 0xFF, n * sizeof(float), nullptr);
  // Poisoned like the output: a partial state the merge reads but no CTA wrote shows as NaN.
  const size_t scratch_bytes =
      mode.scratch ? gpu::paged_attention_scratch_bytes(c.layout, heads, st.rows, st.batch.max_context) : 0;
  gpu::DeviceBuffer scratch(scratch_bytes, "attention scratch");
  gpu::fill_bytes(scratch.as(), 0xFF, scratch_bytes, nullptr);
  gpu::paged_attention(c.layout, kLayer, heads, mode.spans ? st.batch : st.without_spans(), dq.as<float>(),
                       out.as<float>(), scratch.as(), nullptr);
  const std::vector<float> got = download<float>(out, n);
  Errors e;
  double d_cpu = 0, d_ref = 0, n_cpu = 0, n_ref = 0;
  for (size_t i = 0; i < n; ++i) {
    e.not_finite += !std::isfinite(got[i]);
    d_cpu += (double(got[i]) - cpu[i]) * (double(got[i]) - cpu[i]);
    n_cpu += double(cpu[i]) * cpu[i];
    d_ref += (got[i] - ref[i]) * (got[i] - ref[i]);
    n_ref += ref[i] * ref[i];
  }
  e.vs_cpu = std::sqrt(d_cpu / n_cpu);
  e.vs_f64 = std::sqrt(d_ref / n_ref);
  return e;
}

// Attends the step in every mode, checks each and folds the worst figures into `worst`.
// Modes with spans run once per tile kernel of `tiles` (set_attention_tile values; those that
// resolve to the same kernel at this head_dim run once).
void attend_all(engine::ThreadPool& pool, const Cache& c, const Step& st, uint32_t heads, const std::vector<float>& q,
                const std::vector<Mode>& modes, const std::vector<int>& tiles, Worst& worst,
                const std::vector<uint8_t>& pre, const std::vector<float>& k) {
  const uint32_t d = c.layout.geometry.head_dim;
  std::vector<float> cpu(size_t{st.rows} * heads * d);
  ops::attention(pool, c.layout, kLayer, heads, st.cpu, q.data(), cpu.data());
  const std::vector<double> ref = reference(c, st, heads, q, pre, k);
  std::vector<int> variants;  // (set_attention_tile value, kernel it picks)
  for (int t : tiles) {
    gpu::set_attention_tile(t);
    const int k = gpu::attention_tile(d, c.layout.geometry.format);
    bool seen = false;
    for (size_t i = 1; i < variants.size(); i += 2) seen = seen || variants[i] == k;
    if (!seen) variants.insert(variants.end(), {t, k});
  }
  for (Mode mode : modes) {
    CAPTURE(mode.spans);
    CAPTURE(mode.scratch);
    for (size_t i = 0; i < variants.size(); i += 2) {
      if (!mode.spans && i > 0) break;  // no tiles: the same kernels whatever the setting
      gpu::set_attention_tile(variants[i]);
      const bool mma = mode.spans && variants[i + 1] == 2;
      CAPTURE(mma);
      const Errors e = attend(c, st, heads, q, mode, cpu, ref);
      const double bound = mma ? kMmaBound : kF32Bound;
      CHECK(e.not_finite == 0);
      CHECK(e.vs_cpu < bound);
      CHECK(e.vs_f64 < bound);
      Errors& w = mma ? worst.mma : worst.f32;
      worst.ran_mma = worst.ran_mma || mma;
      w.vs_cpu = std::max(w.vs_cpu, e.vs_cpu);
      w.vs_f64 = std::max(w.vs_f64, e.vs_f64);
    }
  }
  gpu::set_attention_tile(0);
}

// Steps over one cache: per step, per sequence (position before the step, tokens in it), the
// order of the sequences' rows, and whether to attend (a step may only fill the cache).
struct Scenario {
  std::vector<uint32_t> capacity;
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> steps;
  std::vector<std::vector<uint32_t>> orders;
  std::vector<bool> attend;
  std::vector<Mode> modes = kAllModes;
  std::vector<int> tiles = {0};  // set_attention_tile values to attend spans with
};

// Runs the scenario for one format and shape, all checks included; returns "format
// vs-CPU/vs-float64" with the worst attended step's figures.
std::string run_steps(const Scenario& sc, uint32_t heads, uint32_t kv_heads, uint32_t head_dim, KvFormat f,
                      uint32_t seed) {
  const std::string format = kv::format_name(f);
  CAPTURE(format);
  CAPTURE(head_dim);
  std::mt19937 rng(seed);
  engine::ThreadPool pool(2);
  Cache c(kv_heads, head_dim, f, sc.capacity, rng);
  Worst worst;
  for (size_t i = 0; i < sc.steps.size(); ++i) {
    CAPTURE(i);
    Step st(c, sc.steps[i], sc.orders[i]);
    const size_t kv_n = size_t{st.rows} * kv_heads * head_dim, q_n = size_t{st.rows} * heads * head_dim;
    const std::vector<float> k = random_floats(kv_n, rng, -2.0f, 2.0f), v = random_floats(kv_n, rng, -2.0f, 2.0f);
    const std::vector<float> q = random_floats(q_n, rng, -1.5f, 1.5f);
    const std::vector<uint8_t> pre = c.host;
    CHECK(write_both(c, st, k, v) == 0);
    if (sc.attend[i]) attend_all(pool, c, st, heads, q, sc.modes, sc.tiles, worst, pre, k);
  }
  std::string line = std::string(kv::format_name(f)) + " " + sci(worst.f32.vs_cpu) + "/" + sci(worst.f32.vs_f64);
  if (worst.ran_mma) line += " (mma " + sci(worst.mma.vs_cpu) + "/" + sci(worst.mma.vs_f64) + ")";
  return line;
}

// Sequences: (position, tokens) of the prefill step, then of the mixed step.
//   0: 9 prompt tokens, then a 5-token prefill chunk (context 14: a partial 4th block)
//   1: 22 prompt tokens, then decode (context 23)
//   2: nothing, then a fresh 3-token prompt (one partial block)
//   3: 4 prompt tokens (exactly one block), then decode into a new block
const Scenario kShortSteps = {{14, 23, 3, 5},
                              {{{0, 9}, {0, 22}, {0, 0}, {0, 4}}, {{9, 5}, {22, 1}, {0, 3}, {4, 1}}},
                              {{3, 1, 0, 2}, {1, 0, 3, 2}},
                              {true, true}};

std::string run_scenario(uint32_t heads, uint32_t kv_heads, uint32_t head_dim, KvFormat f, uint32_t seed) {
  return run_steps(kShortSteps, heads, kv_heads, head_dim, f, seed);
}

// Decode rows with contexts of a few hundred tokens, filled by a first step that is not attended.
// 4 rows x 2 KV heads is 8 CTAs, under the emulator's target of 32, so the rows split 4 ways
// (and the one-row step 5 ways); 5 tokens of context leave most of its splits empty.
const Scenario kLongDecode = {{300, 257, 130, 5},
                              {{{0, 299}, {0, 256}, {0, 129}, {0, 4}},
                               {{299, 1}, {256, 1}, {129, 1}, {4, 1}}},
                              {{0, 1, 2, 3}, {2, 0, 3, 1}},
                              {false, true}};
const Scenario kOneLongRow = {{300}, {{{0, 299}}, {{299, 1}}}, {{0}, {0}}, {false, true}};

// A 70-token chunk after 30 cached tokens (tiles of 16 tokens at GQA 4: four full, one of 6),
// next to a decode row, a fresh 12-token prompt, a 3-token chunk (rows on their own) and a chunk
// of exactly kAttentionSpanMinRows; the first step (spans of 30, 40 and 17) is attended too.
const Scenario kPrefill = {{100, 41, 12, 3, 25},
                           {{{0, 30}, {0, 40}, {0, 0}, {0, 0}, {0, 17}}, {{30, 70}, {40, 1}, {0, 12}, {0, 3}, {17, 8}}},
                           {{1, 4, 0, 2, 3}, {3, 1, 0, 4, 2}},
                           {true, true},
                           kSpanModes,
                           {1, 2}};

// One line of figures per test case: ||out - ref|| / ||ref|| against the CPU and float64 (those of
// the mma tiles in parentheses, where they ran).
void report(const std::string& what, const std::vector<std::string>& parts) {
  std::string line = what + ": rel err vs CPU/float64:";
  for (const std::string& p : parts) line += " " + p;
  MESSAGE(line);
}

}  // namespace

TEST_CASE("kv cache: write_kv stores what kv::encode_row does, extreme rows included") {
  std::mt19937 rng(21);
  for (uint32_t head_dim : {8u, 64u}) {
    for (KvFormat f : kv::kAllKvFormats) {
      CAPTURE(kv::format_name(f));
      CAPTURE(head_dim);
      const uint32_t kv_heads = 3;
      Cache c(kv_heads, head_dim, f, {7, 2}, rng);
      Step st(c, {{0, 7}, {0, 2}}, {1, 0});
      const size_t n = size_t{st.rows} * kv_heads * head_dim;
      std::vector<float> k = random_floats(n, rng, -3.0f, 3.0f), v = random_floats(n, rng, -3.0f, 3.0f);
      // Rows past fp8's 448 and an int scale past f16 (amax / 7 > 65504), tiny rows whose
      // scales are f16 subnormals, and exact ties of x / s at .5 (half to even).
      for (uint32_t i = 0; i < head_dim; ++i) {
        k[i] *= 1e6f;
        v[head_dim + i] *= 1e-6f;
        k[2 * head_dim + i] = (i % 4 == 0) ? 7.0f : 0.5f + float(i % 3);
      }
      CHECK(write_both(c, st, k, v) == 0);
    }
  }
  kv::KvGeometry g;
  g.num_layers = 1;
  g.num_kv_heads = 1;
  g.head_dim = 12;
  g.format = KvFormat::F16;
  CHECK_THROWS_AS(gpu::write_kv(kv::make_layout(g), 0, gpu::PagedBatch{}, nullptr, nullptr, nullptr),
                  std::invalid_argument);
}

TEST_CASE("attention: every KV format, GQA 8 over 2, head_dim 64") {
  std::vector<std::string> figures;
  for (KvFormat f : kv::kAllKvFormats) figures.push_back(run_scenario(8, 2, 64, f, 31));
  report("head_dim 64", figures);
}

TEST_CASE("attention: every KV format, GQA 8 over 2, head_dim 128") {
  std::vector<std::string> figures;
  for (KvFormat f : kv::kAllKvFormats) figures.push_back(run_scenario(8, 2, 128, f, 32));
  report("head_dim 128", figures);
}

TEST_CASE("attention: small head dims, MHA, and a GQA group wider than one CTA") {
  std::vector<std::string> figures;
  for (KvFormat f : {KvFormat::F16, KvFormat::Int4, KvFormat::Fp8E4M3}) figures.push_back(run_scenario(8, 2, 8, f, 33));
  report("head_dim 8", figures);
  report("head_dim 16, 4 over 4", {run_scenario(4, 4, 16, KvFormat::Int8, 34)});
  report("head_dim 32, 24 over 2", {run_scenario(24, 2, 32, KvFormat::BF16, 35)});  // group 12: CTAs of 8 + 4
}

TEST_CASE("attention: unsupported head_dim and head counts are refused by name") {
  kv::KvGeometry g;
  g.num_layers = 1;
  g.num_kv_heads = 2;
  g.head_dim = 96;
  g.format = KvFormat::F16;
  gpu::PagedBatch b;
  b.n_tokens = 1;
  CHECK_THROWS_WITH_AS(gpu::paged_attention(kv::make_layout(g), 0, 8, b, nullptr, nullptr, nullptr, nullptr),
                       doctest::Contains("head_dim = 96"), std::invalid_argument);
  g.head_dim = 64;
  CHECK_THROWS_WITH_AS(gpu::paged_attention(kv::make_layout(g), 0, 7, b, nullptr, nullptr, nullptr, nullptr),
                       doctest::Contains("heads = 7"), std::invalid_argument);
}

TEST_CASE("attention: split-K over long decode contexts, every KV format") {
  kv::KvGeometry g;
  g.tokens_per_block = kTpb;
  g.num_layers = kLayers;
  g.num_kv_heads = 2;
  g.head_dim = 64;
  // The split path is taken only when it needs scratch, so this says the cases below split.
  CHECK(gpu::paged_attention_scratch_bytes(kv::make_layout(g), 8, 4, 300) > 0);
  CHECK(gpu::paged_attention_scratch_bytes(kv::make_layout(g), 8, 4, 20) == 0);
  for (uint32_t head_dim : {64u, 128u}) {
    std::vector<std::string> figures;
    for (KvFormat f : kv::kAllKvFormats) figures.push_back(run_steps(kLongDecode, 8, 2, head_dim, f, 41));
    report("long decode, head_dim " + std::to_string(head_dim), figures);
  }
  report("one long row, head_dim 32", {run_steps(kOneLongRow, 8, 2, 32, KvFormat::Int8, 42)});
}

TEST_CASE("attention: prefill tiles beside decode rows, every KV format, GQA 8 over 2, head_dim 64") {
  std::vector<std::string> figures;
  for (KvFormat f : kv::kAllKvFormats) figures.push_back(run_steps(kPrefill, 8, 2, 64, f, 51));
  report("prefill, head_dim 64", figures);
}

TEST_CASE("attention: prefill tiles beside decode rows, every KV format, GQA 8 over 2, head_dim 128") {
  std::vector<std::string> figures;
  for (KvFormat f : kv::kAllKvFormats) figures.push_back(run_steps(kPrefill, 8, 2, 128, f, 52));
  report("prefill, head_dim 128", figures);
}

TEST_CASE("attention: prefill tiles at head_dim 256, MHA, and a GQA group wider than one CTA") {
  report("prefill, head_dim 256, 4 over 1",
         {run_steps(kPrefill, 4, 1, 256, KvFormat::F16, 56), run_steps(kPrefill, 4, 1, 256, KvFormat::Int4, 57)});
  report("prefill, head_dim 64, 4 over 4", {run_steps(kPrefill, 4, 4, 64, KvFormat::Fp8E4M3, 54)});
  report("prefill, head_dim 64, 24 over 2", {run_steps(kPrefill, 24, 2, 64, KvFormat::BF16, 55)});
}

TEST_CASE("attention: the tile kernel setting") {
  for (int t : {0, 1, 2}) {
    gpu::set_attention_tile(t);
    for (uint32_t d : {8u, 32u, 256u}) CHECK(gpu::attention_tile(d, KvFormat::F16) == 1);  // no mma tiles there
    if (t != 0) {
      for (uint32_t d : {64u, 128u}) CHECK(gpu::attention_tile(d, KvFormat::F16) == t);
    }
  }
  gpu::set_attention_tile(0);
  const char* env = std::getenv("FINESERVE_ATTN_TILE");
  if (env == nullptr) {
    CHECK(gpu::attention_tile(128, KvFormat::Int4) == 2);  // mma by default where it exists,
    CHECK(gpu::attention_tile(128, KvFormat::F32) == 1);   // but f32 over an f32 cache
  }
  CHECK_THROWS_AS(gpu::set_attention_tile(3), std::invalid_argument);
  CHECK_THROWS_AS(gpu::set_attention_tile(-1), std::invalid_argument);
}
