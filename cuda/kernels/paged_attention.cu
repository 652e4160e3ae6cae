// paged_attention: causal attention of every token row (decode and prefill alike) over its
// sequence's cached K/V in the KV Slab, as ops::attention computes it. Three kernels:
//   - rows of a span (a prefill chunk, PagedBatch::spans) at head_dim >= 64: tiles of consecutive
//     tokens that share each K/V read, on tensor cores at head_dim 64 and 128
//     (paged_attention_tile_mma.cuh) unless set_attention_tile / FINESERVE_ATTN_TILE ask for the
//     f32 tiles (paged_attention_tile.cuh), which every other head dim takes;
//   - every other row, and every row of an int4 cache: the row kernel below, one CTA per (row, KV head, chunk of heads), or, when
//     that grid is too small for the GPU and the contexts are long, `splits` CTAs per row over
//     position ranges whose states merge_kernel combines (paged_attention_split.cuh).
//
// Row kernel. Grid (row, KV head, chunk of <= 8 query heads of the GQA group x split): a CTA reads
// each cached row of its range once and scores it against all the query heads that share it.
// Block: 4 warps. A warp takes P = 32 / L positions per step, L = head_dim / 8 lanes per
// position, each lane decoding 8 elements of the K and V rows in registers: one 16-byte load for
// f16/bf16, two for f32, 8 bytes for fp8/int8 and 4 for int4. Eight elements per lane, not 16
// bytes' worth, because each lane also holds 8 heads x 8 elements of V accumulators; a lane group
// still reads whole rows, so the loads stay fully coalesced. Adjacent positions go to adjacent
// lane groups: a warp streams consecutive rows of a block. The q.k partial sums are reduced over
// the L lanes with xor shuffles (every lane ends with the same bits), and each lane group keeps a
// running maximum, sum and V accumulator per head (online softmax). At the end every lane group's
// state goes to shared memory and the block merges them per output element, into the output or,
// for a split, into its partial state.

#include <cmath>
#include <stdexcept>
#include <string>

#include "common/kernel_choice.h"
#include "common/launch.cuh"
#include "kernels/kernels.h"
#include "kernels/paged_attention_decode.cuh"
#include "kernels/paged_attention_split.cuh"
#include "kernels/paged_attention_tile.cuh"
#include "kernels/paged_attention_tile_mma.cuh"

namespace fineserve::gpu {

namespace {

// 1: the f32 tiles, 2: the mma tiles.
KernelChoice g_tile("FINESERVE_ATTN_TILE", "f32", "mma");

constexpr bool mma_tile_supported(uint32_t head_dim) { return head_dim == 64 || head_dim == 128; }

template <uint32_t D>
constexpr uint32_t kLanes = D / kE;  // lanes per row
template <uint32_t D>
constexpr uint32_t kPartials = kWarps * (32 / kLanes<D>);  // lane groups per CTA

template <uint32_t D>
size_t smem_bytes(uint32_t gn) {
  // q [gn][D], m and l [partials][kMaxGroup], acc [partials][gn][D]
  return sizeof(float) * (static_cast<size_t>(gn) * D + 2 * kPartials<D> * kMaxGroup +
                          static_cast<size_t>(kPartials<D>) * gn * D);
}

template <uint32_t D, KvFormat F>
__global__ void __launch_bounds__(kWarps * 32)
    attention_kernel(kv::KvLayout layout, uint32_t layer, uint32_t heads, PagedBatch batch, const uint32_t* rows,
                     const float* q, float* out, float score_scale, Partials partials) {
  constexpr uint32_t L = kLanes<D>, P = 32 / L, R = kPartials<D>;
  const kv::KvGeometry& g = layout.geometry;
  const uint32_t slot = blockIdx.x, token = rows ? rows[slot] : slot, kvh = blockIdx.y;
  const uint32_t split = blockIdx.z % partials.splits;
  const uint32_t group = heads / g.num_kv_heads, h0 = blockIdx.z / partials.splits * kMaxGroup;
  const uint32_t gn = group - h0 < kMaxGroup ? group - h0 : kMaxGroup;  // same in the whole CTA
  const uint32_t first_head = kvh * group + h0;

  FS_DYNAMIC_SMEM(float, smem);
  float* qs = smem;
  float* ms = qs + gn * D;
  float* ls = ms + R * kMaxGroup;
  float* accs = ls + R * kMaxGroup;

  const float* qrow = q + (static_cast<size_t>(token) * heads + first_head) * D;
  for (uint32_t i = threadIdx.x; i < gn * D; i += blockDim.x) qs[i] = qrow[i];
  __syncthreads();

  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, sub = lane / L, part = lane % L;
  uint32_t begin, end;
  split_range(batch.token_pos[token] + 1, split, partials.splits, begin, end);
  const uint64_t* blocks = batch.block_offsets + batch.seq_first_block[batch.token_seq[token]];
  const uint32_t tpb = g.tokens_per_block;

  float m[kMaxGroup], l[kMaxGroup], acc[kMaxGroup][kE];
#pragma unroll
  for (uint32_t j = 0; j < kMaxGroup; ++j) {
    m[j] = -INFINITY;
    l[j] = 0;
#pragma unroll
    for (uint32_t e = 0; e < kE; ++e) acc[j][e] = 0;
  }

  for (uint32_t base = begin + warp * P; base < end; base += kWarps * P) {
    const uint32_t p = base + sub;
    const bool valid = p < end;
    // A lane group past the range reads its last row anyway: its lanes must still take part in
    // the shuffles, and the result is dropped.
    const uint32_t pr = valid ? p : end - 1;
    const uint8_t* block = batch.slab + blocks[pr / tpb];
    float kx[kE], vx[kE];
    if constexpr (F == KvFormat::Int4) {
      const uint8_t* k_rows;
      const uint16_t* k_params;
      k4_source(batch, layout, layer, kvh, token, pr, block, k_rows, k_params);
      read_k4(k_rows, k_params, D, pr % tpb, part, kx);
    } else {
      read_row<F>(block, layout, layer, 0, kvh, pr % tpb, part, kx);
    }
    read_row<F>(block, layout, layer, 1, kvh, pr % tpb, part, vx);
#pragma unroll
    for (uint32_t j = 0; j < kMaxGroup; ++j) {
      if (j >= gn) break;
      const Floats4* qv = reinterpret_cast<const Floats4*>(qs + j * D + part * kE);
      const Floats4 qa = qv[0], qb = qv[1];
      float dot = 0;
#pragma unroll
      for (int e = 0; e < 4; ++e) dot += qa.v[e] * kx[e];
#pragma unroll
      for (int e = 0; e < 4; ++e) dot += qb.v[e] * kx[4 + e];
#pragma unroll
      for (uint32_t mask = L / 2; mask > 0; mask >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, mask);
      if (valid) {
        const float s = dot * score_scale;
        const float mn = fmaxf(m[j], s);
        const float corr = weight(m[j], mn), w = __expf(s - mn);
        l[j] = l[j] * corr + w;
#pragma unroll
        for (uint32_t e = 0; e < kE; ++e) acc[j][e] = acc[j][e] * corr + w * vx[e];
        m[j] = mn;
      }
    }
  }

  const uint32_t r = warp * P + sub;
#pragma unroll
  for (uint32_t j = 0; j < kMaxGroup; ++j) {
    if (j >= gn) break;
    if (part == 0) {
      ms[r * kMaxGroup + j] = m[j];
      ls[r * kMaxGroup + j] = l[j];
    }
#pragma unroll
    for (uint32_t e = 0; e < kE; ++e) accs[(r * gn + j) * D + part * kE + e] = acc[j][e];
  }
  __syncthreads();

  float* orow = out + (static_cast<size_t>(token) * heads + first_head) * D;
  const uint64_t first_partial = (uint64_t{slot} * heads + first_head) * partials.splits + split;
  for (uint32_t i = threadIdx.x; i < gn * D; i += blockDim.x) {
    const uint32_t j = i / D, d = i % D;
    float mx = -INFINITY;
    for (uint32_t k = 0; k < R; ++k) mx = fmaxf(mx, ms[k * kMaxGroup + j]);
    float sum = 0, o = 0;
    for (uint32_t k = 0; k < R; ++k) {
      const float w = weight(ms[k * kMaxGroup + j], mx);
      sum += ls[k * kMaxGroup + j] * w;
      o += accs[(k * gn + j) * D + d] * w;
    }
    if (partials.splits == 1) {
      orow[j * D + d] = o / sum;
    } else {
      const uint64_t at = first_partial + uint64_t{j} * partials.splits;
      if (d == 0) {
        partials.ml[2 * at] = mx;
        partials.ml[2 * at + 1] = sum;
      }
      partials.acc[at * D + d] = o;
    }
  }
}

// The row kernel over `rows` (null: every row of the batch), split when the grid is small.
template <uint32_t D, KvFormat F>
void launch_rows(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch,
                 const uint32_t* rows, uint32_t n_rows, const float* q, float* out, float scale, void* scratch,
                 Stream stream) {
  const uint32_t kvh = layout.geometry.num_kv_heads, group = heads / kvh;
  const uint32_t chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const uint32_t gn = group < kMaxGroup ? group : kMaxGroup;
  const uint32_t splits = scratch ? split_count(n_rows, kvh * chunks, batch.max_context) : 1;
  const Partials part = splits > 1 ? partials_in(scratch, uint64_t{n_rows} * heads * splits, splits) : Partials{};
  launch("paged_attention", attention_kernel<D, F>, dim3(n_rows, kvh, chunks * splits), dim3(kWarps * 32),
         smem_bytes<D>(gn), stream, layout, layer, heads, batch, rows, q, out, scale, part);
  if (splits > 1) launch_merge(rows, n_rows, heads, D, part, out, stream);
}

template <uint32_t D, KvFormat F>
void launch_d_f(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch, const float* q,
                float* out, void* scratch, Stream stream) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));  // as ops::attention rounds it
  // int4 takes the row kernel only: a span's tokens may each see their own block differently.
  if constexpr (D >= 64 && F != KvFormat::Int4) {
    if (batch.n_spans > 0) {
      if constexpr (mma_tile_supported(D)) {
        if (attention_tile(D, F) == 2) {
          launch_tiles_mma<D, F>(layout, layer, heads, batch, q, out, scale, stream);
        } else {
          launch_tiles<D, F>(layout, layer, heads, batch, q, out, scale, stream);
        }
      } else {
        launch_tiles<D, F>(layout, layer, heads, batch, q, out, scale, stream);
      }
      if (batch.n_single_rows > 0) {
        launch_rows<D, F>(layout, layer, heads, batch, batch.single_rows, batch.n_single_rows, q, out, scale, scratch,
                          stream);
      }
      return;
    }
  }
  launch_rows<D, F>(layout, layer, heads, batch, nullptr, batch.n_tokens, q, out, scale, scratch, stream);
}

template <uint32_t D>
void launch_d(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch, const float* q,
              float* out, void* scratch, Stream stream) {
  switch (layout.geometry.format) {
    case KvFormat::F32: return launch_d_f<D, KvFormat::F32>(layout, layer, heads, batch, q, out, scratch, stream);
    case KvFormat::F16: return launch_d_f<D, KvFormat::F16>(layout, layer, heads, batch, q, out, scratch, stream);
    case KvFormat::BF16: return launch_d_f<D, KvFormat::BF16>(layout, layer, heads, batch, q, out, scratch, stream);
    case KvFormat::Fp8E4M3:
      return launch_d_f<D, KvFormat::Fp8E4M3>(layout, layer, heads, batch, q, out, scratch, stream);
    case KvFormat::Int8: return launch_d_f<D, KvFormat::Int8>(layout, layer, heads, batch, q, out, scratch, stream);
    case KvFormat::Int4: return launch_d_f<D, KvFormat::Int4>(layout, layer, heads, batch, q, out, scratch, stream);
  }
}

}  // namespace

void set_attention_tile(int variant) { g_tile.set(variant, "gpu::set_attention_tile"); }

int attention_tile(uint32_t head_dim, KvFormat format) {
  const int v = g_tile.forced();
  if (!mma_tile_supported(head_dim)) return 1;
  // An f32 cache is a request for f32 attention: by default it keeps the f32 tiles, whose
  // products are not rounded to f16 (nor overflow it).
  if (v == 0) return format == KvFormat::F32 ? 1 : 2;
  return v;
}

size_t paged_attention_scratch_bytes(const kv::KvLayout& layout, uint32_t heads, uint32_t n_tokens,
                                     uint32_t max_context) {
  const kv::KvGeometry& g = layout.geometry;
  if (g.num_kv_heads == 0 || heads == 0) return 0;
  const uint32_t group = heads / g.num_kv_heads, kv_ctas = g.num_kv_heads * ((group + kMaxGroup - 1) / kMaxGroup);
  // Fewer rows may split more ways, so the largest need can be at any row count; only grids
  // under kTargetCtas CTAs split at all.
  uint64_t most = 0;
  for (uint32_t rows = 1; rows <= n_tokens && rows <= kTargetCtas; ++rows) {
    const uint32_t s = split_count(rows, kv_ctas, max_context);
    if (s > 1 && uint64_t{rows} * s > most) most = uint64_t{rows} * s;
  }
  return sizeof(float) * partial_floats(most * heads, g.head_dim);
}

void paged_attention(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch,
                     const float* q, float* out, void* scratch, Stream stream) {
  const kv::KvGeometry& g = layout.geometry;
  if (g.num_kv_heads == 0 || heads == 0 || heads % g.num_kv_heads != 0) {
    throw std::invalid_argument("paged_attention: heads = " + std::to_string(heads) + " is not a multiple of kvHeads = " +
                                std::to_string(g.num_kv_heads));
  }
  if (layer >= g.num_layers) {
    throw std::invalid_argument("paged_attention: layer " + std::to_string(layer) + " of a " +
                                std::to_string(g.num_layers) + "-layer cache");
  }
  if (batch.n_tokens == 0) return;
  switch (g.head_dim) {
    case 8: return launch_d<8>(layout, layer, heads, batch, q, out, scratch, stream);
    case 16: return launch_d<16>(layout, layer, heads, batch, q, out, scratch, stream);
    case 32: return launch_d<32>(layout, layer, heads, batch, q, out, scratch, stream);
    case 64: return launch_d<64>(layout, layer, heads, batch, q, out, scratch, stream);
    case 128: return launch_d<128>(layout, layer, heads, batch, q, out, scratch, stream);
    case 256: return launch_d<256>(layout, layer, heads, batch, q, out, scratch, stream);
    default:
      throw std::invalid_argument("paged_attention: head_dim = " + std::to_string(g.head_dim) +
                                  " (the CUDA kernel supports 8, 16, 32, 64, 128 and 256)");
  }
}

}  // namespace fineserve::gpu
