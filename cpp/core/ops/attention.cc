#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kv/kv_codec.h"
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

void attention(engine::ThreadPool& pool, const kv::KvLayout& layout, uint32_t layer, uint32_t heads,
               const std::vector<PagedSequence>& seqs, const float* q, float* out) {
  const kv::KvGeometry& g = layout.geometry;
  const uint32_t d = g.head_dim, group = heads / g.num_kv_heads, tpb = g.tokens_per_block;
  const size_t q_stride = static_cast<size_t>(heads) * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const bool k_channels = g.format == kv::KvFormat::Int4, k_ref = g.format == kv::KvFormat::Fp8E4M3;
  const K4Snapshots* snap = k_channels && t_k4.matches(layout, layer, seqs) ? &t_k4 : nullptr;
  // Work items: (token, kv head); each computes the `group` query heads that share the KV head, so
  // every cached row is decoded once per item.
  std::vector<std::pair<uint32_t, uint32_t>> tokens;  // (sequence, token within it)
  for (uint32_t s = 0; s < seqs.size(); ++s) {
    for (uint32_t t = 0; t < seqs[s].n_tokens; ++t) tokens.push_back({s, t});
  }
  const simd::Kernels& k = simd::active();
  auto read_row = [&](const uint8_t* block, uint32_t kv, uint32_t kvh, uint32_t slot, float* buf) {
    return kv::decode_row(block + layout.row_offset(layer, kv, kvh, slot), block + layout.scale_at(layer, kv, kvh, slot),
                          g.format, d, buf);
  };
  pool.parallel_for(tokens.size() * g.num_kv_heads, [&](size_t begin, size_t end) {
    thread_local std::vector<float> scores, row, acc, kstep, kmin;
    for (size_t item = begin; item < end; ++item) {
      auto [si, t] = tokens[item / g.num_kv_heads];
      uint32_t kvh = static_cast<uint32_t>(item % g.num_kv_heads);
      const PagedSequence& s = seqs[si];
      const uint32_t ctx = s.position + t + 1;  // causal: positions 0 .. own
      const float* qt = q + (s.row + t) * q_stride;
      scores.resize(static_cast<size_t>(group) * ctx);
      row.resize(d);
      kstep.resize(d);
      kmin.resize(d);
      const uint8_t* k_rows = nullptr;  // int4: the current block's K rows (slot 0) and params
      for (uint32_t p = 0; p < ctx; ++p) {
        const float* kr;
        if (k_channels) {
          if (p % tpb == 0) {
            const uint8_t* params;
            const uint8_t* block = s.blocks[p / tpb];
            if (snap != nullptr && p / tpb == (ctx - 1) / tpb && snap->has[s.row + t]) {
              k_rows = snap->data.data() + (static_cast<size_t>(s.row + t) * g.num_kv_heads + kvh) * snap->bytes;
              params = k_rows + static_cast<uint64_t>(tpb) * layout.row_bytes;
            } else {
              k_rows = block + layout.row_offset(layer, 0, kvh, 0);
              params = block + layout.k_params_at(layer, kvh);
            }
            kv::load_k_params(params, d, kstep.data(), kmin.data());
          }
          kv::decode_k_int4(k_rows + (p % tpb) * layout.row_bytes, kstep.data(), kmin.data(), d, row.data());
          kr = row.data();
        } else if (k_ref) {
          const uint8_t* block = s.blocks[p / tpb];
          if (p % tpb == 0) kv::load_k_refs(block + layout.k_params_at(layer, kvh), d, kmin.data());
          kv::decode_k_fp8(block + layout.row_offset(layer, 0, kvh, p % tpb), kmin.data(), d, row.data());
          kr = row.data();
        } else {
          kr = read_row(s.blocks[p / tpb], 0, kvh, p % tpb, row.data());
        }
        for (uint32_t j = 0; j < group; ++j) {
          scores[j * ctx + p] = k.dot_f32(qt + (kvh * group + j) * d, kr, d) * scale;
        }
      }
      for (uint32_t j = 0; j < group; ++j) {
        float* sc = scores.data() + j * ctx;
        float mx = sc[0];
        for (uint32_t p = 1; p < ctx; ++p) mx = std::max(mx, sc[p]);
        double sum = 0;
        for (uint32_t p = 0; p < ctx; ++p) {
          sc[p] = std::exp(sc[p] - mx);
          sum += sc[p];
        }
        float inv = static_cast<float>(1.0 / sum);
        for (uint32_t p = 0; p < ctx; ++p) sc[p] *= inv;
      }
      acc.assign(static_cast<size_t>(group) * d, 0.0f);
      for (uint32_t p = 0; p < ctx; ++p) {
        const float* vr = read_row(s.blocks[p / tpb], 1, kvh, p % tpb, row.data());
        for (uint32_t j = 0; j < group; ++j) k.axpy_f32(scores[j * ctx + p], vr, acc.data() + j * d, d);
      }
      for (uint32_t j = 0; j < group; ++j) {
        std::memcpy(out + (s.row + t) * q_stride + (kvh * group + j) * d, acc.data() + j * d, d * sizeof(float));
      }
    }
  });
}

}  // namespace fineserve::ops
