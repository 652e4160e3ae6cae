// The prefill path of paged_attention: a CTA attends a tile of consecutive token rows of one span
// (PagedBatch::spans) for one KV head and <= 8 of its query heads, and reads each cached K/V row
// of the tile's context from the slab once for all of them, where the row kernel would read it
// once per token row (a 2048-token chunk: ~1000 times).
//
// A query vector is one (token, head) of the tile, vector i = token (i / gn), head (i % gn), so a
// warp's vectors are consecutive tokens and it can skip the K/V tiles past its last one. The CTA
// holds kVecs vectors (64, or 32 at head_dim 256 to keep 8 accumulators per lane): kVecs / gn
// tokens. Per step, the 4 warps decode 32 positions of K and V to f32 in shared memory; then each
// warp scores its kVecsPerWarp vectors against them, lane j taking position j (K rows padded by
// 4 floats so the lanes' 16-byte loads hit distinct banks), runs the online softmax per vector
// (the maximum over the warp's lanes, the sum kept per lane and reduced once at the end), puts
// the weights in its own shared slice, and accumulates P x V with lane l owning dimensions
// l, l + 32, ... of every vector. All math is f32, as in the row kernel: no tensor cores yet.
//
// Shared memory, floats: Q kVecs x D, K 32 x (D + 4), V 32 x D, P 4 x kVecsPerWarp x 32; 40.5 KiB
// at head_dim 64, 72.5 KiB at 128, 100.5 KiB at 256. Head dims below 64 take the row kernel.
#pragma once

#include "common/launch.cuh"
#include "kernels/paged_attention_decode.cuh"
#include "kernels/paged_attention_tile_grid.cuh"

namespace fineserve::gpu {

namespace {

template <uint32_t D>
struct TileShape {
  static constexpr uint32_t kVecsPerWarp = D >= 256 ? 8 : 16;
  static constexpr uint32_t kVecs = kWarps * kVecsPerWarp;
  static constexpr uint32_t kPositions = 32;  // one per lane
  static constexpr uint32_t kKStride = D + 4;
  static constexpr uint32_t kDimsPerLane = D / 32;
  static constexpr size_t kSmemBytes =
      sizeof(float) * (kVecs * D + kPositions * kKStride + kPositions * D + kWarps * kVecsPerWarp * kPositions);
};

template <uint32_t D, KvFormat F>
__global__ void __launch_bounds__(kWarps * 32)
    tile_attention_kernel(kv::KvLayout layout, uint32_t layer, uint32_t heads, PagedBatch batch, const float* q,
                          float* out, float score_scale, uint32_t tile_tokens, uint32_t chunks) {
  using S = TileShape<D>;
  constexpr uint32_t VW = S::kVecsPerWarp, NP = S::kPositions, DL = S::kDimsPerLane;
  const kv::KvGeometry& g = layout.geometry;
  TileCta cta;
  if (!locate_tile(batch, heads, g.num_kv_heads, tile_tokens, chunks, cta)) return;  // the whole CTA, before any barrier
  const uint32_t kvh = cta.kvh, gn = cta.gn, first_head = cta.first_head, n_vec = cta.n_vec;
  const uint32_t row0 = cta.row0, pos0 = cta.pos0, cta_end = cta.end, tpb = g.tokens_per_block;
  const uint64_t* blocks = cta.blocks;

  FS_DYNAMIC_SMEM(float, smem);
  float* qs = smem;
  float* ks = qs + S::kVecs * D;
  float* vs = ks + NP * S::kKStride;
  float* ps_all = vs + NP * D;

  for (uint32_t i = threadIdx.x; i < S::kVecs * D; i += blockDim.x) {
    const uint32_t v = i / D, d = i % D;
    qs[i] = v < n_vec ? q[(static_cast<size_t>(row0 + v / gn) * heads + first_head + v % gn) * D + d] : 0.0f;
  }

  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* ps = ps_all + warp * VW * NP;
  // Positions below lim[i] are visible to vector i; 0 for vectors past the tile.
  uint32_t lim[VW];
  uint32_t warp_end = 0;
#pragma unroll
  for (uint32_t i = 0; i < VW; ++i) {
    const uint32_t v = warp * VW + i;
    lim[i] = v < n_vec ? pos0 + v / gn + 1 : 0;
    warp_end = lim[i] > warp_end ? lim[i] : warp_end;
  }
  float m[VW], l[VW], acc[VW][DL];
#pragma unroll
  for (uint32_t i = 0; i < VW; ++i) {
    m[i] = -INFINITY;
    l[i] = 0;
#pragma unroll
    for (uint32_t k = 0; k < DL; ++k) acc[i][k] = 0;
  }

  for (uint32_t base = 0; base < cta_end; base += NP) {
    __syncthreads();  // the previous step's readers of ks / vs are done (and qs is stored)
    for (uint32_t c = threadIdx.x; c < NP * (D / kE); c += blockDim.x) {
      const uint32_t r = c / (D / kE), part = c % (D / kE), p = base + r;
      float kx[kE], vx[kE];
      if (p < cta_end) {
        const uint8_t* block = batch.slab + blocks[p / tpb];
        read_row<F>(block, layout, layer, 0, kvh, p % tpb, part, kx);
        read_row<F>(block, layout, layer, 1, kvh, p % tpb, part, vx);
      } else {
        // Masked positions get weight 0, and 0 x 0 stays 0 where 0 x stale NaN would not.
#pragma unroll
        for (uint32_t e = 0; e < kE; ++e) kx[e] = vx[e] = 0;
      }
      Floats4* kd = reinterpret_cast<Floats4*>(ks + r * S::kKStride + part * kE);
      Floats4* vd = reinterpret_cast<Floats4*>(vs + r * D + part * kE);
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) {
        kd[0].v[e] = kx[e];
        kd[1].v[e] = kx[4 + e];
        vd[0].v[e] = vx[e];
        vd[1].v[e] = vx[4 + e];
      }
    }
    __syncthreads();
    if (base >= warp_end) continue;  // warp-uniform: every vector of this warp is before `base`

    float s[VW];
#pragma unroll
    for (uint32_t i = 0; i < VW; ++i) s[i] = 0;
    const Floats4* krow = reinterpret_cast<const Floats4*>(ks + lane * S::kKStride);
    for (uint32_t d4 = 0; d4 < D / 4; ++d4) {
      const Floats4 k4 = krow[d4];
#pragma unroll
      for (uint32_t i = 0; i < VW; ++i) {
        const Floats4 q4 = reinterpret_cast<const Floats4*>(qs + (warp * VW + i) * D)[d4];
        s[i] += q4.v[0] * k4.v[0] + q4.v[1] * k4.v[1] + q4.v[2] * k4.v[2] + q4.v[3] * k4.v[3];
      }
    }
    const uint32_t p = base + lane;
#pragma unroll
    for (uint32_t i = 0; i < VW; ++i) {
      const float sc = p < lim[i] ? s[i] * score_scale : -INFINITY;
      const float mn = fmaxf(m[i], warp_max(sc));
      const float corr = weight(m[i], mn), w = weight(sc, mn);
      l[i] = l[i] * corr + w;
#pragma unroll
      for (uint32_t k = 0; k < DL; ++k) acc[i][k] *= corr;
      m[i] = mn;
      ps[i * NP + lane] = w;
    }
    __syncwarp();
    const uint32_t np = warp_end - base < NP ? warp_end - base : NP;
    for (uint32_t j = 0; j < np; ++j) {
      float vj[DL];
#pragma unroll
      for (uint32_t k = 0; k < DL; ++k) vj[k] = vs[j * D + lane + 32 * k];
#pragma unroll
      for (uint32_t i = 0; i < VW; ++i) {
        const float w = ps[i * NP + j];
#pragma unroll
        for (uint32_t k = 0; k < DL; ++k) acc[i][k] += w * vj[k];
      }
    }
  }

#pragma unroll
  for (uint32_t i = 0; i < VW; ++i) {
    const float sum = warp_sum(l[i]);
    const uint32_t v = warp * VW + i;
    if (v < n_vec) {
      float* o = out + (static_cast<size_t>(row0 + v / gn) * heads + first_head + v % gn) * D;
#pragma unroll
      for (uint32_t k = 0; k < DL; ++k) o[lane + 32 * k] = acc[i][k] / sum;
    }
  }
}

template <uint32_t D, KvFormat F>
void launch_tiles(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch, const float* q,
                  float* out, float score_scale, Stream stream) {
  using S = TileShape<D>;
  const TileGrid t = tile_grid(layout, heads, batch, S::kVecs);
  launch("paged_attention (prefill tiles)", tile_attention_kernel<D, F>, t.grid, dim3(kWarps * 32), S::kSmemBytes,
         stream, layout, layer, heads, batch, q, out, score_scale, t.tile_tokens, t.chunks);
}

}  // namespace

}  // namespace fineserve::gpu
