#include "ops/attention.h"

#include <cmath>
#include <cstring>

#include "simd/dispatch.h"

namespace fineserve::ops {

namespace {

// Reads one cached row (head_dim elements) as float32.
void read_row(const uint8_t* src, kv::KvFormat format, uint32_t n, float* dst) {
  const simd::Kernels& k = simd::active();
  switch (format) {
    case kv::KvFormat::F32: std::memcpy(dst, src, n * sizeof(float)); return;
    case kv::KvFormat::F16: k.f16_to_f32(reinterpret_cast<const uint16_t*>(src), dst, n); return;
    case kv::KvFormat::BF16: k.bf16_to_f32(reinterpret_cast<const uint16_t*>(src), dst, n); return;
    default: break;  // the executor refuses other formats before any step runs
  }
}

void write_row(const float* src, kv::KvFormat format, uint32_t n, uint8_t* dst) {
  const simd::Kernels& k = simd::active();
  switch (format) {
    case kv::KvFormat::F32: std::memcpy(dst, src, n * sizeof(float)); return;
    case kv::KvFormat::F16: k.f32_to_f16(src, reinterpret_cast<uint16_t*>(dst), n); return;
    case kv::KvFormat::BF16: k.f32_to_bf16(src, reinterpret_cast<uint16_t*>(dst), n); return;
    default: break;
  }
}

}  // namespace

void write_kv(const kv::KvLayout& layout, uint32_t layer, const std::vector<PagedSequence>& seqs,
              const float* k, const float* v) {
  const kv::KvGeometry& g = layout.geometry;
  const size_t stride = static_cast<size_t>(g.num_kv_heads) * g.head_dim;
  for (const PagedSequence& s : seqs) {
    for (uint32_t t = 0; t < s.n_tokens; ++t) {
      uint32_t pos = s.position + t;
      uint8_t* block = s.blocks[pos / g.tokens_per_block];
      uint32_t slot = pos % g.tokens_per_block;
      const float* kr = k + (s.row + t) * stride;
      const float* vr = v + (s.row + t) * stride;
      for (uint32_t h = 0; h < g.num_kv_heads; ++h) {
        write_row(kr + h * g.head_dim, g.format, g.head_dim, block + layout.row_offset(layer, 0, h, slot));
        write_row(vr + h * g.head_dim, g.format, g.head_dim, block + layout.row_offset(layer, 1, h, slot));
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
        read_row(s.blocks[p / tpb] + layout.row_offset(layer, 0, kvh, p % tpb), g.format, d, row.data());
        for (uint32_t j = 0; j < group; ++j) {
          scores[j * ctx + p] = k.dot_f32(qt + (kvh * group + j) * d, row.data(), d) * scale;
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
        read_row(s.blocks[p / tpb] + layout.row_offset(layer, 1, kvh, p % tpb), g.format, d, row.data());
        for (uint32_t j = 0; j < group; ++j) k.axpy_f32(scores[j * ctx + p], row.data(), acc.data() + j * d, d);
      }
      for (uint32_t j = 0; j < group; ++j) {
        std::memcpy(out + (s.row + t) * q_stride + (kvh * group + j) * d, acc.data() + j * d, d * sizeof(float));
      }
    }
  });
}

}  // namespace fineserve::ops
