// How both prefill tile kernels (paged_attention_tile.cuh in f32, paged_attention_tile_mma.cuh on
// tensor cores) cut a step's spans over CTAs: blockIdx.x is a tile of consecutive tokens of span
// blockIdx.y, blockIdx.z a KV head and a chunk of <= kMaxGroup of its query heads. A tile holds a
// kernel's fixed number of query vectors (one per token and head), so its token count follows
// from the GQA group.
#pragma once

#include "common/cuda_lang.cuh"
#include "kernels/kernels.h"
#include "kernels/paged_attention_decode.cuh"

namespace fineserve::gpu {

namespace {

struct TileGrid {
  dim3 grid;
  uint32_t tile_tokens;  // tokens per tile
  uint32_t chunks;       // head chunks per KV head
};

inline TileGrid tile_grid(const kv::KvLayout& layout, uint32_t heads, const PagedBatch& batch, uint32_t vecs) {
  const uint32_t group = heads / layout.geometry.num_kv_heads;
  TileGrid t;
  t.chunks = (group + kMaxGroup - 1) / kMaxGroup;
  t.tile_tokens = vecs / (group < kMaxGroup ? group : kMaxGroup);
  t.grid = dim3((batch.max_span_rows + t.tile_tokens - 1) / t.tile_tokens, batch.n_spans,
                layout.geometry.num_kv_heads * t.chunks);
  return t;
}

// What one tile CTA attends.
struct TileCta {
  uint32_t kvh;            // the KV head
  uint32_t gn;             // query heads in the chunk
  uint32_t first_head;     // the chunk's first query head
  uint32_t n_vec;          // query vectors: the tile's tokens times gn
  uint32_t row0;           // the tile's first token row
  uint32_t pos0;           // its position; a span's positions are consecutive
  uint32_t end;            // positions the tile's last token sees: pos0 + its tokens
  const uint64_t* blocks;  // its sequence's block offsets
};

// False for a tile past the end of its span (spans shorter than the longest in the step): the
// whole CTA then returns, before any barrier.
__device__ __forceinline__ bool locate_tile(const PagedBatch& batch, uint32_t heads, uint32_t num_kv_heads,
                                            uint32_t tile_tokens, uint32_t chunks, TileCta& c) {
  const AttentionSpan span = batch.spans[blockIdx.y];
  const uint32_t t0 = blockIdx.x * tile_tokens;
  if (t0 >= span.n_rows) return false;
  const uint32_t n_tok = span.n_rows - t0 < tile_tokens ? span.n_rows - t0 : tile_tokens;
  c.kvh = blockIdx.z / chunks;
  const uint32_t h0 = (blockIdx.z % chunks) * kMaxGroup, group = heads / num_kv_heads;
  c.gn = group - h0 < kMaxGroup ? group - h0 : kMaxGroup;
  c.first_head = c.kvh * group + h0;
  c.n_vec = n_tok * c.gn;
  c.row0 = span.first_row + t0;
  c.blocks = batch.block_offsets + batch.seq_first_block[batch.token_seq[c.row0]];
  c.pos0 = batch.token_pos[c.row0];
  c.end = c.pos0 + n_tok;
  return true;
}

}  // namespace

}  // namespace fineserve::gpu
