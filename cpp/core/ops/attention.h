// Paged attention over a KV Slab: K/V rows are written into and read from a sequence's blocks
// through KvLayout, in the cache's element format (any of kv_format.h; kv_codec.h encodes and
// decodes a row, its scale living in the block's scale array).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/thread_pool.h"
#include "kv/kv_geometry.h"
#include "simd/dispatch.h"

namespace fineserve::ops {

// One sequence's view of the cache for a step: a base pointer per block of its block table.
struct PagedSequence {
  std::vector<uint8_t*> blocks;
  uint32_t position = 0;   // tokens cached before this step
  uint32_t n_tokens = 0;   // tokens in this step (their K/V are written before attention)
  uint32_t row = 0;        // index of the sequence's first token in the step's activation rows
};

// Stores K and V of every token of the step for one layer: k, v are [rows][kv_heads * head_dim].
// Quantized formats compute each (token, head) row's scale here, from that row alone.
void write_kv(const kv::KvLayout& layout, uint32_t layer, const std::vector<PagedSequence>& seqs,
              const float* k, const float* v);

// Causal attention for one layer: each token attends to its sequence's positions up to its own.
// q: [rows][heads * head_dim]; out: same shape. GQA: query head h reads KV head
// h / (heads / kv_heads). Scores are scaled by 1/sqrt(head_dim) and soft-maxed in float, online
// (flash-style: a running maximum and sum per query, block by block in position order). Work
// items are (sequence, tile of up to 16 consecutive tokens, KV head): each chunk of a cached
// block is decoded to float once per item and serves every query row of the tile
// (ops/attention_kernels.h). A token's output is bit-identical whatever else is in the step,
// however its prompt was chunked and however many threads run.
void attention(engine::ThreadPool& pool, const kv::KvLayout& layout, uint32_t layer, uint32_t heads,
               const std::vector<PagedSequence>& seqs, const float* q, float* out);
// The same with the kernels of a given SIMD level (tests check every level the host runs).
void attention(engine::ThreadPool& pool, const kv::KvLayout& layout, uint32_t layer, uint32_t heads,
               const std::vector<PagedSequence>& seqs, const float* q, float* out, simd::Level level);

}  // namespace fineserve::ops
