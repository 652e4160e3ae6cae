#include "ops/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "kv/kv_codec.h"
#include "simd/half.h"
#include "ops/attention_kernels.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

namespace {

// int4 K is coded per channel over a block, so a row's codes change while later rows of its block
// arrive (kv_codec.h, append_k_int4). A token must attend to its block as it stood right after
// its own row was written, as it would in a decode step of its own; when a step writes several
// rows into one block (a prefill chunk), write_kv keeps a copy of that block's K (codes and
// params) after each such row, and attention reads the token's own block from the copy. The
// copies live for one write_kv/attention pair on the calling thread (the forward pass calls both
// per layer, in that order); anything else finds a stale tag and reads the slab, as a decode step
// (one row per sequence) always does.
struct K4Snapshots {
  const kv::KvLayout* layout = nullptr;
  uint32_t layer = 0;
  const PagedSequence* seqs = nullptr;
  size_t n_seqs = 0;
  uint64_t bytes = 0;             // per (row, KV head): tpb * d / 2 codes, then the params
  std::vector<uint8_t> has;       // per row of the step
  std::vector<uint8_t> data;      // [row][kv head][bytes]

  bool matches(const kv::KvLayout& l, uint32_t layer_, const std::vector<PagedSequence>& s) const {
    return layout == &l && layer == layer_ && seqs == s.data() && n_seqs == s.size();
  }
};

thread_local K4Snapshots t_k4;

uint32_t step_rows(const std::vector<PagedSequence>& seqs) {
  uint32_t rows = 0;
  for (const PagedSequence& s : seqs) rows = std::max(rows, s.row + s.n_tokens);
  return rows;
}

void write_k_int4(const kv::KvLayout& layout, uint32_t layer, const std::vector<PagedSequence>& seqs, const float* k) {
  const kv::KvGeometry& g = layout.geometry;
  const uint32_t d = g.head_dim, tpb = g.tokens_per_block;
  const uint64_t codes = static_cast<uint64_t>(tpb) * layout.row_bytes, params = layout.k_params_bytes();
  K4Snapshots& snap = t_k4;
  snap.layout = &layout;
  snap.layer = layer;
  snap.seqs = seqs.data();
  snap.n_seqs = seqs.size();
  snap.bytes = codes + params;
  const uint32_t rows = step_rows(seqs);
  snap.has.assign(rows, 0);
  bool sized = false;
  const size_t stride = static_cast<size_t>(g.num_kv_heads) * d;
  for (const PagedSequence& s : seqs) {
    for (uint32_t t = 0; t < s.n_tokens; ++t) {
      const uint32_t pos = s.position + t, slot = pos % tpb;
      uint8_t* block = s.blocks[pos / tpb];
      for (uint32_t h = 0; h < g.num_kv_heads; ++h) {
        kv::append_k_int4(k + (s.row + t) * stride + h * d, d, slot, block + layout.row_offset(layer, 0, h, 0),
                          block + layout.k_params_at(layer, h));
      }
      // Later rows of this step land in the same block: keep the block as this row left it.
      if (t + 1 < s.n_tokens && slot + 1 < tpb) {
        if (!sized) {
          snap.data.resize(static_cast<size_t>(rows) * g.num_kv_heads * snap.bytes);
          sized = true;
        }
        snap.has[s.row + t] = 1;
        for (uint32_t h = 0; h < g.num_kv_heads; ++h) {
          uint8_t* dst = snap.data.data() + (static_cast<size_t>(s.row + t) * g.num_kv_heads + h) * snap.bytes;
          std::memcpy(dst, block + layout.row_offset(layer, 0, h, 0), (slot + 1) * layout.row_bytes);
          std::memcpy(dst + codes, block + layout.k_params_at(layer, h), params);
        }
      }
    }
  }
}

}  // namespace

void write_kv(const kv::KvLayout& layout, uint32_t layer, const std::vector<PagedSequence>& seqs,
              const float* k, const float* v) {
  const kv::KvGeometry& g = layout.geometry;
  // Checked here, once per layer, because a short scale slot would spill into the next one.
  if (g.scale_bytes < kv::default_scale_bytes(g.format)) {
    throw std::invalid_argument("scaleBytes = " + std::to_string(g.scale_bytes) + ": a " + kv::format_name(g.format) +
                                " KV cache needs " + std::to_string(kv::default_scale_bytes(g.format)));
  }
  const bool k_channels = g.format == kv::KvFormat::Int4;
  // fp8 K is coded against its block's slot-0 row (kv_codec.h): rows go in position order, so a
  // block's slot 0 is always written before its later slots, in this step or an earlier one.
  const bool k_ref = g.format == kv::KvFormat::Fp8E4M3;
  if (k_channels) write_k_int4(layout, layer, seqs, k);
  const size_t stride = static_cast<size_t>(g.num_kv_heads) * g.head_dim;
  for (const PagedSequence& s : seqs) {
    for (uint32_t t = 0; t < s.n_tokens; ++t) {
      uint32_t pos = s.position + t;
      uint8_t* block = s.blocks[pos / g.tokens_per_block];
      uint32_t slot = pos % g.tokens_per_block;
      const float* kr = k + (s.row + t) * stride;
      const float* vr = v + (s.row + t) * stride;
      for (uint32_t h = 0; h < g.num_kv_heads; ++h) {
        if (k_ref) {
          kv::append_k_fp8(kr + h * g.head_dim, g.head_dim, slot, block + layout.row_offset(layer, 0, h, slot),
                           block + layout.k_params_at(layer, h));
        } else if (!k_channels) {
          kv::encode_row(kr + h * g.head_dim, g.format, g.head_dim, block + layout.row_offset(layer, 0, h, slot),
                         block + layout.scale_at(layer, 0, h, slot));
        }
        kv::encode_row(vr + h * g.head_dim, g.format, g.head_dim, block + layout.row_offset(layer, 1, h, slot),
                       block + layout.scale_at(layer, 1, h, slot));
      }
    }
  }
}

namespace {

// Keys per online-softmax step: a block is taken in chunks of at most this many slots (the whole
// block at the default 16 tokens), so the buffers stay in L1 whatever tokens_per_block is. Chunk
// bounds depend only on the block geometry, never on the step.
constexpr uint32_t kChunkKeys = 32;
// Query rows (tokens x the query heads of one KV head) per work item: each decoded key and value
// chunk serves all of them.
constexpr uint32_t kTileRows = 64, kTileTokens = 16;

struct Item {
  uint32_t seq, t0, n, kvh;
};

// One work item's buffers, reused across items on a thread.
struct Scratch {
  std::vector<float> q, m, l, acc, s, alpha, kt, row, v, kstep, kmin, own_step, own_min;
  std::vector<uint32_t> nvis;
};

// One work item: its query rows against every chunk of their sequence's blocks up to the tile's
// last position, in position order; each row takes only the keys at or before its own position.
class Attend {
 public:
  Attend(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const std::vector<PagedSequence>& seqs,
         const float* q, float* out, const K4Snapshots* snap, const AttnKernels& kernels)
      : layout_(layout), g_(layout.geometry), layer_(layer), heads_(heads), group_(heads / g_.num_kv_heads),
        seqs_(seqs), q_(q), out_(out), snap_(snap), k_(kernels) {}

  void run(const Item& it, Scratch& w) const {
    const PagedSequence& s = seqs_[it.seq];
    const uint32_t d = g_.head_dim, tpb = g_.tokens_per_block, rows = it.n * group_;
    const size_t q_stride = static_cast<size_t>(heads_) * d;
    // log2(e) / sqrt(d) folded into the queries: the kernels' scores are in the log2 domain.
    const float qscale = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(d)));
    w.q.resize(static_cast<size_t>(rows) * d);
    for (uint32_t t = 0; t < it.n; ++t) {
      const float* src = q_ + (s.row + it.t0 + t) * q_stride + static_cast<size_t>(it.kvh) * group_ * d;
      float* dst = w.q.data() + static_cast<size_t>(t) * group_ * d;
      for (size_t i = 0; i < static_cast<size_t>(group_) * d; ++i) dst[i] = src[i] * qscale;
    }
    w.m.assign(rows, -std::numeric_limits<float>::infinity());
    w.l.assign(rows, 0.0f);
    w.acc.assign(static_cast<size_t>(rows) * d, 0.0f);
    const uint32_t kc_max = std::min(tpb, kChunkKeys), kp_max = round_up(kc_max);
    w.s.resize(static_cast<size_t>(rows) * kp_max);
    w.alpha.resize(rows);
    w.nvis.resize(rows);
    w.kt.resize(static_cast<size_t>(d) * kp_max);
    w.row.resize(static_cast<size_t>(kc_max) * d);
    w.v.resize(static_cast<size_t>(kc_max) * d);
    w.kstep.resize(d);
    w.kmin.resize(d);

    const uint32_t pos0 = s.position + it.t0, last = pos0 + it.n - 1;
    for (uint32_t b = 0; b <= last / tpb; ++b) {
      const uint8_t* block = s.blocks[b];
      const uint32_t base = b * tpb;
      // int4 K: the tokens of this tile whose own block this is and whose write left a snapshot read
      // it from there (K4Snapshots); everyone else reads the slab. They are a contiguous run: every
      // token of the step in this block but the last one written to it.
      uint32_t own0 = it.n, own1 = it.n;
      if (snap_ != nullptr) {
        for (uint32_t t = 0; t < it.n; ++t) {
          if ((pos0 + t) / tpb == b && snap_->has[s.row + it.t0 + t]) {
            own0 = std::min(own0, t);
            own1 = t + 1;
          }
        }
      }
      if (k_channels()) {
        load_params(block + layout_.k_params_at(layer_, it.kvh), w.kstep.data(), w.kmin.data());
      } else if (g_.format == kv::KvFormat::Fp8E4M3) {
        load_params(block + layout_.k_params_at(layer_, it.kvh), nullptr, w.kmin.data());
      }
      for (uint32_t c0 = 0; c0 < tpb && base + c0 <= last; c0 += kChunkKeys) {
        const uint32_t key0 = base + c0, kc = std::min(kChunkKeys, tpb - c0);
        const uint32_t avail = std::min(kc, last + 1 - key0), kp = round_up(kc);
        const uint32_t first = key0 > pos0 ? key0 - pos0 : 0;  // tokens before it do not see this chunk
        const float* v = load_values(block, it.kvh, c0, avail, w);
        auto attend = [&](uint32_t t_begin, uint32_t t_end) {
          if (t_begin >= t_end) return;
          const uint32_t r0 = t_begin * group_, nr = (t_end - t_begin) * group_;
          float* sc = w.s.data() + static_cast<size_t>(r0) * kp;
          k_.scores(w.q.data() + static_cast<size_t>(r0) * d, nr, d, w.kt.data(), kp, sc);
          for (uint32_t r = r0; r < r0 + nr; ++r) {
            const uint32_t pos = pos0 + r / group_;
            w.nvis[r] = std::min(kc, pos + 1 - key0);
            w.alpha[r] = k_.softmax(sc + static_cast<size_t>(r - r0) * kp, kp, w.nvis[r], &w.m[r], &w.l[r]);
          }
          k_.accumulate(sc, kp, w.alpha.data() + r0, w.nvis.data() + r0, nr, v, d,
                        w.acc.data() + static_cast<size_t>(r0) * d);
        };
        const uint32_t mid0 = std::max(first, own0), mid1 = std::max(first, own1);
        if (first < mid0 || mid1 < it.n) {
          load_keys(block + layout_.row_offset(layer_, 0, it.kvh, 0), block, it.kvh, c0, avail, kp, w.kstep.data(),
                    w.kmin.data(), w);
          attend(first, mid0);
          attend(mid1, it.n);
        }
        for (uint32_t t = mid0; t < mid1; ++t) {
          const uint8_t* own = snap_->data.data() +
                               (static_cast<size_t>(s.row + it.t0 + t) * g_.num_kv_heads + it.kvh) * snap_->bytes;
          w.own_step.resize(d);
          w.own_min.resize(d);
          load_params(own + static_cast<uint64_t>(tpb) * layout_.row_bytes, w.own_step.data(), w.own_min.data());
          load_keys(own, block, it.kvh, c0, avail, kp, w.own_step.data(), w.own_min.data(), w);
          attend(t, t + 1);
        }
      }
    }
    for (uint32_t r = 0; r < rows; ++r) {
      float* dst = out_ + (s.row + it.t0 + r / group_) * q_stride + (static_cast<size_t>(it.kvh) * group_ + r % group_) * d;
      const float* a = w.acc.data() + static_cast<size_t>(r) * d;
      for (uint32_t c = 0; c < d; ++c) dst[c] = a[c] / w.l[r];
    }
  }

 private:
  bool k_channels() const { return g_.format == kv::KvFormat::Int4; }
  uint32_t round_up(uint32_t n) const { return (n + k_.lanes - 1) / k_.lanes * k_.lanes; }

  // A block's per-channel K params as floats (kv::load_k_params / load_k_refs, through the dispatch
  // table's f16 conversion): int4's steps then minima, fp8's references alone (step null).
  void load_params(const uint8_t* params, float* step, float* minimum) const {
    const uint32_t d = g_.head_dim;
    const simd::Kernels& k = simd::active();
    // f16s at an even offset of the block (KvLayout), read as decode_row reads an f16 row.
    const auto* h = reinterpret_cast<const uint16_t*>(params);
    if (step != nullptr) {
      k.f16_to_f32(h, step, d);
      h += d;
    }
    k.f16_to_f32(h, minimum, d);
  }

  // K slots [c0, c0 + avail) of a head transposed into w.kt ([d][kp], lanes past avail zero).
  // `k4_rows`: int4 K's slot 0 (the slab's or a snapshot's), with its params `step` / `minimum`;
  // fp8's references are in `minimum`.
  void load_keys(const uint8_t* k4_rows, const uint8_t* block, uint32_t kvh, uint32_t c0, uint32_t avail,
                 uint32_t kp, const float* step, const float* minimum, Scratch& w) const {
    const uint32_t d = g_.head_dim;
    const float* rows = w.row.data();
    if (g_.format == kv::KvFormat::F32) {
      rows = reinterpret_cast<const float*>(block + layout_.row_offset(layer_, 0, kvh, c0));  // in place
    } else {
      for (uint32_t i = 0; i < avail; ++i) {
        const uint32_t slot = c0 + i;
        float* dst = w.row.data() + static_cast<size_t>(i) * d;
        if (k_channels()) {
          k_.int4_k_row(k4_rows + slot * layout_.row_bytes, step, minimum, d, dst);
        } else if (g_.format == kv::KvFormat::Fp8E4M3) {
          k_.fp8_row(block + layout_.row_offset(layer_, 0, kvh, slot), d, minimum, dst);
        } else {
          kv::decode_row(block + layout_.row_offset(layer_, 0, kvh, slot), block + layout_.scale_at(layer_, 0, kvh, slot),
                         g_.format, d, dst);
        }
      }
    }
    k_.transpose(rows, avail, d, w.kt.data(), kp);
  }

  // V slots [c0, c0 + avail) of a head as float rows [avail][d]; an f32 cache's rows in place.
  const float* load_values(const uint8_t* block, uint32_t kvh, uint32_t c0, uint32_t avail, Scratch& w) const {
    const uint32_t d = g_.head_dim;
    if (g_.format == kv::KvFormat::F32) {
      return reinterpret_cast<const float*>(block + layout_.row_offset(layer_, 1, kvh, c0));
    }
    for (uint32_t i = 0; i < avail; ++i) {
      float* dst = w.v.data() + static_cast<size_t>(i) * d;
      if (g_.format == kv::KvFormat::Fp8E4M3) {
        k_.fp8_row(block + layout_.row_offset(layer_, 1, kvh, c0 + i), d, nullptr, dst);
        continue;
      }
      if (g_.format == kv::KvFormat::Int4) {
        uint16_t h;
        std::memcpy(&h, block + layout_.scale_at(layer_, 1, kvh, c0 + i), sizeof h);
        k_.int4_v_row(block + layout_.row_offset(layer_, 1, kvh, c0 + i), simd::f16_to_f32_scalar(h), d, dst);
        continue;
      }
      kv::decode_row(block + layout_.row_offset(layer_, 1, kvh, c0 + i), block + layout_.scale_at(layer_, 1, kvh, c0 + i),
                     g_.format, d, w.v.data() + static_cast<size_t>(i) * d);
    }
    return w.v.data();
  }

  const kv::KvLayout& layout_;
  const kv::KvGeometry& g_;
  uint32_t layer_, heads_, group_;
  const std::vector<PagedSequence>& seqs_;
  const float* q_;
  float* out_;
  const K4Snapshots* snap_;
  const AttnKernels& k_;
};

}  // namespace

void attention(engine::ThreadPool& pool, const kv::KvLayout& layout, uint32_t layer, uint32_t heads,
               const std::vector<PagedSequence>& seqs, const float* q, float* out) {
  attention(pool, layout, layer, heads, seqs, q, out, simd::active().level);
}

void attention(engine::ThreadPool& pool, const kv::KvLayout& layout, uint32_t layer, uint32_t heads,
               const std::vector<PagedSequence>& seqs, const float* q, float* out, simd::Level level) {
  const kv::KvGeometry& g = layout.geometry;
  const uint32_t group = heads / g.num_kv_heads;
  const K4Snapshots* snap =
      g.format == kv::KvFormat::Int4 && t_k4.matches(layout, layer, seqs) ? &t_k4 : nullptr;
  // Work items: (sequence, tile of consecutive tokens, KV head), costliest (latest) first; threads
  // take them in that order from a shared counter, so a prefill's long tail does not land on one.
  const uint32_t tile = std::max(1u, std::min(kTileTokens, kTileRows / std::max(1u, group)));
  std::vector<Item> items;
  for (uint32_t s = 0; s < seqs.size(); ++s) {
    for (uint32_t t0 = 0; t0 < seqs[s].n_tokens; t0 += tile) {
      for (uint32_t h = 0; h < g.num_kv_heads; ++h) items.push_back({s, t0, std::min(tile, seqs[s].n_tokens - t0), h});
    }
  }
  auto end_pos = [&](const Item& it) { return seqs[it.seq].position + it.t0 + it.n; };
  std::stable_sort(items.begin(), items.end(), [&](const Item& a, const Item& b) { return end_pos(a) > end_pos(b); });
  const Attend attend(layout, layer, heads, seqs, q, out, snap, attn_kernels(level));
  std::atomic<size_t> next{0};
  pool.parallel_for(std::min<size_t>(pool.size(), items.size()), [&](size_t, size_t) {
    thread_local Scratch w;
    for (size_t i = next++; i < items.size(); i = next++) attend.run(items[i], w);
  });
}

}  // namespace fineserve::ops
