// The prefill tile kernel on tensor cores (flash-attention-2 style): the same tiles, vector order
// and causal limits as paged_attention_tile.cuh, with Q K^T and P V as mma.m16n8k16 over f16
// operands and f32 accumulators. Selected by set_attention_tile / FINESERVE_ATTN_TILE at head_dim
// 64 and 128 (paged_attention.cu).
//
// A CTA holds 64 query vectors (vector i = token i / gn, head i % gn), 16 per warp: one m16 row
// block, so every warp's softmax state lives in its own accumulator rows and the warps never
// exchange anything but the shared K/V. Q is converted to f16 once and kept as A fragments
// (D / 16 k-steps x 4 registers). Per step of 64 positions the CTA decodes K to f16 as [position]
// [dim] and V transposed, [dim][position]: both are then k-contiguous B operands (K's k is the
// dimension, V's is the position), so the one ldmatrix without .trans loads both. Each warp then
// computes S = Q K^T (16 x 64, 8 n-tiles of 4 f32 per lane), scales and masks it in registers,
// runs the online softmax per row (a lane holds rows g and g + 8; the row's other columns sit in
// the 3 other lanes of its quad, hence the xor 1, 2 shuffles), and turns the weights straight
// into A fragments: the m16n8 C layout of two adjacent n-tiles is the m16n8k16 A layout of one
// k-step, so P never goes through shared memory. O (16 x D, D / 8 n-tiles) accumulates P V.
//
// f16 operands: K, V and Q*K products must stay below 65504 (true of real activations and of
// every integer/fp8 cache; an f32 cache holding larger values would give inf here, not in the
// f32 kernel). Rounding Q, K, P and V to f16 costs ~1e-3 relative error against f32.
//
// Shared memory, halves: K 64 x (D + 8) (also the Q staging area, before the first step),
// V^T D x (64 + 8). The 8-half pads make consecutive rows start 4 banks apart, so the 8 row
// addresses of each ldmatrix matrix hit distinct banks. 18 KiB at head_dim 64, 35 KiB at 128.
#pragma once

#include "common/launch.cuh"
#include "common/ldmatrix.cuh"
#include "common/mma.cuh"
#include "kernels/paged_attention_decode.cuh"
#include "kernels/paged_attention_tile_grid.cuh"

namespace fineserve::gpu {

namespace {

template <uint32_t D>
struct MmaTileShape {
  static_assert(D == 64 || D == 128, "the mma tile kernel serves head_dim 64 and 128");
  static constexpr uint32_t kRowsPerWarp = 16;  // one m16 row block
  static constexpr uint32_t kVecs = kWarps * kRowsPerWarp;
  static constexpr uint32_t kPositions = 64;
  static constexpr uint32_t kKStride = D + 8;               // halves per K (and Q) row
  static constexpr uint32_t kVStride = kPositions + 8;      // halves per V^T row
  static constexpr uint32_t kQkSteps = D / 16;              // k-steps of Q K^T
  static constexpr uint32_t kSTiles = kPositions / 8;       // n-tiles of S
  static constexpr uint32_t kPvSteps = kPositions / 16;     // k-steps of P V
  static constexpr uint32_t kOTiles = D / 8;                // n-tiles of O
  static_assert(kVecs <= kPositions, "Q is staged in the K area");
  static constexpr size_t kSmemBytes = sizeof(uint16_t) * (kPositions * kKStride + D * kVStride);
};

__device__ __forceinline__ uint32_t pack_f16(float lo, float hi) {
  return static_cast<uint32_t>(f32_to_f16(lo)) | (static_cast<uint32_t>(f32_to_f16(hi)) << 16);
}

template <uint32_t D, KvFormat F>
__global__ void __launch_bounds__(kWarps * 32)
    tile_attention_mma_kernel(kv::KvLayout layout, uint32_t layer, uint32_t heads, PagedBatch batch, const float* q,
                              float* out, float score_scale, uint32_t tile_tokens, uint32_t chunks) {
  using S = MmaTileShape<D>;
  constexpr uint32_t NP = S::kPositions;
  const kv::KvGeometry& g = layout.geometry;
  TileCta cta;
  if (!locate_tile(batch, heads, g.num_kv_heads, tile_tokens, chunks, cta)) return;  // the whole CTA, before any barrier
  const uint32_t kvh = cta.kvh, gn = cta.gn, first_head = cta.first_head, n_vec = cta.n_vec;
  const uint32_t row0 = cta.row0, pos0 = cta.pos0, cta_end = cta.end, tpb = g.tokens_per_block;
  const uint64_t* blocks = cta.blocks;

  FS_DYNAMIC_SMEM(uint16_t, smem);
  uint16_t* ks = smem;
  uint16_t* vt = ks + NP * S::kKStride;

  for (uint32_t c = threadIdx.x; c < S::kVecs * (D / 2); c += blockDim.x) {
    const uint32_t v = c / (D / 2), d = 2 * (c % (D / 2));
    uint32_t w = 0;  // vectors past the tile: 0, so their (unwritten) rows stay finite
    if (v < n_vec) {
      const float* src = q + (static_cast<size_t>(row0 + v / gn) * heads + first_head + v % gn) * D + d;
      w = pack_f16(src[0], src[1]);
    }
    *reinterpret_cast<uint32_t*>(ks + v * S::kKStride + d) = w;
  }
  __syncthreads();

  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;
  // ldmatrix.x4: lanes 8i .. 8i + 7 address rows 0..7 of matrix i.
  const uint32_t mi = lane >> 3, mr = lane & 7;
  uint32_t qa[S::kQkSteps][4];
  {
    // Matrices 0..3 = (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15):
    // registers a0..a3 of the A fragment.
    const uint16_t* qrow = ks + (warp * S::kRowsPerWarp + mr + 8 * (mi & 1)) * S::kKStride + 8 * (mi >> 1);
#pragma unroll
    for (uint32_t kk = 0; kk < S::kQkSteps; ++kk) ldmatrix_m8n8<4>(qa[kk], qrow + 16 * kk);
  }

  // This lane's rows: gid and gid + 8 of the warp's block. Positions below lim are visible.
  const uint32_t r0 = warp * S::kRowsPerWarp + gid, r1 = r0 + 8;
  const uint32_t lim0 = r0 < n_vec ? pos0 + r0 / gn + 1 : 0, lim1 = r1 < n_vec ? pos0 + r1 / gn + 1 : 0;
  const uint32_t first_vec = warp * S::kRowsPerWarp;
  const uint32_t last_vec = first_vec + S::kRowsPerWarp - 1 < n_vec ? first_vec + S::kRowsPerWarp - 1 : n_vec - 1;
  const uint32_t warp_end = first_vec < n_vec ? pos0 + last_vec / gn + 1 : 0;

  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0, l1 = 0;
  float o[S::kOTiles][4];
#pragma unroll
  for (uint32_t n = 0; n < S::kOTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0;

  for (uint32_t base = 0; base < cta_end; base += NP) {
    __syncthreads();  // the Q fragments are loaded, or the previous step's readers of ks / vt are done
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
      Words4 kw;
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) kw.w[e] = pack_f16(kx[2 * e], kx[2 * e + 1]);
      *reinterpret_cast<Words4*>(ks + r * S::kKStride + part * kE) = kw;
#pragma unroll
      for (uint32_t e = 0; e < kE; ++e) vt[(part * kE + e) * S::kVStride + r] = f32_to_f16(vx[e]);
    }
    __syncthreads();
    if (base >= warp_end) continue;  // warp-uniform: every row of this warp is before `base`

    // S = Q K^T. B of n-tile n is rows n*8 .. n*8 + 7 of ks; one ldmatrix.x4 covers 32 of k.
    // Tiles at or past warp_end (the causal diagonal, the span's end) are masked whole: skipped
    // (warp-uniform), left 0 for the mask below.
    float s[S::kSTiles][4];
#pragma unroll
    for (uint32_t n = 0; n < S::kSTiles; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0;
      if (base + n * 8 >= warp_end) continue;
      const uint16_t* krow = ks + (n * 8 + mr) * S::kKStride + 8 * mi;
#pragma unroll
      for (uint32_t kk = 0; kk < S::kQkSteps; kk += 2) {
        uint32_t b[4];
        ldmatrix_m8n8<4>(b, krow + 16 * kk);
        const uint32_t blo[2] = {b[0], b[1]}, bhi[2] = {b[2], b[3]};
        mma_m16n8k16_f16(s[n], qa[kk], blo, s[n]);
        mma_m16n8k16_f16(s[n], qa[kk + 1], bhi, s[n]);
      }
    }

    // C layout: s[n][0..1] is row gid, columns n*8 + 2 tig + {0, 1}; s[n][2..3] the same of row gid + 8.
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (uint32_t n = 0; n < S::kSTiles; ++n) {
      const uint32_t p = base + n * 8 + 2 * tig;
      s[n][0] = p < lim0 ? s[n][0] * score_scale : -INFINITY;
      s[n][1] = p + 1 < lim0 ? s[n][1] * score_scale : -INFINITY;
      s[n][2] = p < lim1 ? s[n][2] * score_scale : -INFINITY;
      s[n][3] = p + 1 < lim1 ? s[n][3] * score_scale : -INFINITY;
      mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
      mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
    }
#pragma unroll
    for (int mask = 1; mask <= 2; mask <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, mask));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, mask));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float c0 = weight(m0, mn0), c1 = weight(m1, mn1);
    m0 = mn0;
    m1 = mn1;
    l0 *= c0;
    l1 *= c1;
#pragma unroll
    for (uint32_t n = 0; n < S::kOTiles; ++n) {
      o[n][0] *= c0;
      o[n][1] *= c0;
      o[n][2] *= c1;
      o[n][3] *= c1;
    }

    // P as A fragments: k-step kk is S n-tiles 2kk (a0..a3) and 2kk + 1 (a4..a7). The sums take
    // the f16-rounded weights that P V multiplies, so O / l stays a weighted mean of V rows.
    uint32_t pa[S::kPvSteps][4];
#pragma unroll
    for (uint32_t kk = 0; kk < S::kPvSteps; ++kk) {
#pragma unroll
      for (uint32_t h = 0; h < 2; ++h) {
        const float* sn = s[2 * kk + h];
        const uint16_t w0 = f32_to_f16(weight(sn[0], mn0)), w1 = f32_to_f16(weight(sn[1], mn0));
        const uint16_t w2 = f32_to_f16(weight(sn[2], mn1)), w3 = f32_to_f16(weight(sn[3], mn1));
        l0 += f16_to_f32(w0) + f16_to_f32(w1);
        l1 += f16_to_f32(w2) + f16_to_f32(w3);
        pa[kk][2 * h] = static_cast<uint32_t>(w0) | (static_cast<uint32_t>(w1) << 16);
        pa[kk][2 * h + 1] = static_cast<uint32_t>(w2) | (static_cast<uint32_t>(w3) << 16);
      }
    }

    // O += P V. B of n-tile n is rows n*8 .. n*8 + 7 of vt (dimensions), k = positions.
#pragma unroll
    for (uint32_t n = 0; n < S::kOTiles; ++n) {
      const uint16_t* vrow = vt + (n * 8 + mr) * S::kVStride + 8 * mi;
#pragma unroll
      for (uint32_t kk = 0; kk < S::kPvSteps; kk += 2) {
        if (base + 16 * kk >= warp_end) break;  // all 32 weights of the pair are 0
        uint32_t b[4];
        ldmatrix_m8n8<4>(b, vrow + 16 * kk);
        const uint32_t blo[2] = {b[0], b[1]}, bhi[2] = {b[2], b[3]};
        mma_m16n8k16_f16(o[n], pa[kk], blo, o[n]);
        mma_m16n8k16_f16(o[n], pa[kk + 1], bhi, o[n]);
      }
    }
  }

#pragma unroll
  for (int mask = 1; mask <= 2; mask <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, mask);
    l1 += __shfl_xor_sync(0xffffffffu, l1, mask);
  }
  if (r0 < n_vec) {
    float* dst = out + (static_cast<size_t>(row0 + r0 / gn) * heads + first_head + r0 % gn) * D + 2 * tig;
#pragma unroll
    for (uint32_t n = 0; n < S::kOTiles; ++n) {
      dst[n * 8] = o[n][0] / l0;
      dst[n * 8 + 1] = o[n][1] / l0;
    }
  }
  if (r1 < n_vec) {
    float* dst = out + (static_cast<size_t>(row0 + r1 / gn) * heads + first_head + r1 % gn) * D + 2 * tig;
#pragma unroll
    for (uint32_t n = 0; n < S::kOTiles; ++n) {
      dst[n * 8] = o[n][2] / l1;
      dst[n * 8 + 1] = o[n][3] / l1;
    }
  }
}

template <uint32_t D, KvFormat F>
void launch_tiles_mma(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch,
                      const float* q, float* out, float score_scale, Stream stream) {
  using S = MmaTileShape<D>;
  const TileGrid t = tile_grid(layout, heads, batch, S::kVecs);
  launch("paged_attention (prefill tiles, mma)", tile_attention_mma_kernel<D, F>, t.grid, dim3(kWarps * 32),
         S::kSmemBytes, stream, layout, layer, heads, batch, q, out, score_scale, t.tile_tokens, t.chunks);
}

}  // namespace

}  // namespace fineserve::gpu
