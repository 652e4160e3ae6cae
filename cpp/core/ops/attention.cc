#include "ops/attention.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kv/kv_codec.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

void write_kv(const kv::KvLayout& layout, uint32_t layer, const std::vector<PagedSequence>& seqs,
              const float* k, const float* v) {
  const kv::KvGeometry& g = layout.geometry;
  // Checked here, once per layer, because a short scale slot would spill into the next one.
  if (g.scale_bytes < kv::default_scale_bytes(g.format)) {
    throw std::invalid_argument("scaleBytes = " + std::to_string(g.scale_bytes) + ": a " + kv::format_name(g.format) +
                                " KV cache needs " + std::to_string(kv::default_scale_bytes(g.format)));
  }
  const size_t stride = static_cast<size_t>(g.num_kv_heads) * g.head_dim;
  for (const PagedSequence& s : seqs) {
    for (uint32_t t = 0; t < s.n_tokens; ++t) {
      uint32_t pos = s.position + t;
      uint8_t* block = s.blocks[pos / g.tokens_per_block];
      uint32_t slot = pos % g.tokens_per_block;
      const float* kr = k + (s.row + t) * stride;
      const float* vr = v + (s.row + t) * stride;
      for (uint32_t h = 0; h < g.num_kv_heads; ++h) {
        kv::encode_row(kr + h * g.head_dim, g.format, g.head_dim, block + layout.row_offset(layer, 0, h, slot),
                       block + layout.scale_at(layer, 0, h, slot));
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
    thread_local std::vector<float> scores, row, acc;
    for (size_t item = begin; item < end; ++item) {
      auto [si, t] = tokens[item / g.num_kv_heads];
      uint32_t kvh = static_cast<uint32_t>(item % g.num_kv_heads);
      const PagedSequence& s = seqs[si];
      const uint32_t ctx = s.position + t + 1;  // causal: positions 0 .. own
      const float* qt = q + (s.row + t) * q_stride;
      scores.resize(static_cast<size_t>(group) * ctx);
      row.resize(d);
      for (uint32_t p = 0; p < ctx; ++p) {
        const float* kr = read_row(s.blocks[p / tpb], 0, kvh, p % tpb, row.data());
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
