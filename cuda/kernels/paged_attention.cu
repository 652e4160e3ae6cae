// paged_attention: causal attention of every token row (decode and prefill alike) over its
// sequence's cached K/V in the KV Slab, as ops::attention computes it.
//
// Grid (token row, KV head, chunk of <= 8 query heads of the GQA group): a CTA reads each cached
// row once and scores it against all the query heads that share it. Block: 4 warps. A warp takes
// P = 32 / L positions per step, L = head_dim / 8 lanes per position, each lane decoding 8
// elements of the K and V rows in registers: one 16-byte load for f16/bf16, two for f32, 8 bytes
// for fp8/int8 and 4 for int4. Eight elements per lane, not 16 bytes' worth, because each lane
// also holds 8 heads x 8 elements of V accumulators; a lane group still reads whole rows, so the
// loads stay fully coalesced. Adjacent positions go to adjacent lane groups: a warp streams
// consecutive rows of a block. The q.k partial sums are reduced over the L lanes with xor
// shuffles (every lane ends with the same bits), and each lane group keeps a running maximum,
// sum and V accumulator per head (online softmax). At the end every lane group's state goes to
// shared memory and the block merges them per output element.
//
// Prefill rows are plain rows here (each re-reads its prefix), and one sequence's context is not
// split across CTAs: a flash-decoding split needs a scratch buffer the kernels.h signature does
// not pass yet.
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "common/numeric.cuh"
#include "kernels/kernels.h"

namespace fineserve::gpu {

namespace {

using kv::KvFormat;

constexpr unsigned kWarps = 4;
constexpr uint32_t kE = 8;         // elements of a row per lane
constexpr uint32_t kMaxGroup = 8;  // query heads per CTA; larger GQA groups take several CTAs

struct __align__(16) Words4 {
  uint32_t w[4];
};
struct __align__(8) Words2 {
  uint32_t w[2];
};
struct __align__(16) Floats4 {
  float v[4];
};

__device__ __forceinline__ float load_f16_scale(const uint8_t* p) {
  return f16_to_f32(*reinterpret_cast<const uint16_t*>(p));
}

// E4M3 without a table or branches (kv_codec.cc's decode_fp8): the 7 magnitude bits at f32 bit 20
// are the value scaled by 2^-120, subnormals included; S.1111.111 is NaN.
__device__ __forceinline__ float fp8_bits_to_f32(uint32_t b) {
  const uint32_t mag = b & 0x7Fu;
  uint32_t bits = ((b & 0x80u) << 24) | (mag << 20);
  if (mag == 0x7Fu) bits |= 0x7FC00000u;
  return __uint_as_float(bits) * 0x1p120f;
}

// kE elements of a stored row, starting at `p` (aligned to their width), as floats; s is the
// row's scale for the integer formats. Each value is s * q exactly as kv::decode_row makes it.
template <KvFormat F>
__device__ __forceinline__ void decode_chunk(const uint8_t* p, float s, float (&x)[kE]) {
  if constexpr (F == KvFormat::F32) {
    const Words4 a = reinterpret_cast<const Words4*>(p)[0], b = reinterpret_cast<const Words4*>(p)[1];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      x[i] = __uint_as_float(a.w[i]);
      x[4 + i] = __uint_as_float(b.w[i]);
    }
  } else if constexpr (F == KvFormat::F16 || F == KvFormat::BF16) {
    const Words4 a = *reinterpret_cast<const Words4*>(p);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint16_t lo = static_cast<uint16_t>(a.w[i]), hi = static_cast<uint16_t>(a.w[i] >> 16);
      x[2 * i] = F == KvFormat::F16 ? f16_to_f32(lo) : bf16_to_f32(lo);
      x[2 * i + 1] = F == KvFormat::F16 ? f16_to_f32(hi) : bf16_to_f32(hi);
    }
  } else if constexpr (F == KvFormat::Fp8E4M3 || F == KvFormat::Int8) {
    const Words2 a = *reinterpret_cast<const Words2*>(p);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t byte = (a.w[i / 4] >> (8 * (i % 4))) & 0xFFu;
      if constexpr (F == KvFormat::Fp8E4M3) {
        x[i] = fp8_bits_to_f32(byte);
      } else {
        x[i] = s * static_cast<float>(static_cast<int8_t>(byte));
      }
    }
  } else {  // Int4: nibble i of the word is element i, sign-extended by the arithmetic shift
    const uint32_t w = *reinterpret_cast<const uint32_t*>(p);
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] = s * static_cast<float>(static_cast<int32_t>(w << (28 - 4 * i)) >> 28);
  }
}

template <KvFormat F>
__device__ __forceinline__ void read_row(const uint8_t* block, const kv::KvLayout& layout, uint32_t layer, uint32_t kv,
                                         uint32_t head, uint32_t slot, uint32_t part, float (&x)[kE]) {
  constexpr uint32_t chunk_bytes = kE * kv::bits_per_element(F) / 8;
  float s = 0;
  if constexpr (F == KvFormat::Int8 || F == KvFormat::Int4) s = load_f16_scale(block + layout.scale_at(layer, kv, head, slot));
  decode_chunk<F>(block + layout.row_offset(layer, kv, head, slot) + part * chunk_bytes, s, x);
}

// exp(a - m), 0 for a state that saw no position yet (a == -inf), whatever m is.
__device__ __forceinline__ float weight(float a, float m) { return a == -INFINITY ? 0.0f : __expf(a - m); }

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
    attention_kernel(kv::KvLayout layout, uint32_t layer, uint32_t heads, PagedBatch batch, const float* q, float* out,
                     float score_scale) {
  constexpr uint32_t L = kLanes<D>, P = 32 / L, R = kPartials<D>;
  const kv::KvGeometry& g = layout.geometry;
  const uint32_t token = blockIdx.x, kvh = blockIdx.y;
  const uint32_t group = heads / g.num_kv_heads, h0 = blockIdx.z * kMaxGroup;
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
  const uint32_t ctx = batch.token_pos[token] + 1;
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

  for (uint32_t base = warp * P; base < ctx; base += kWarps * P) {
    const uint32_t p = base + sub;
    const bool valid = p < ctx;
    // A lane group past the context reads the last row anyway: its lanes must still take part in
    // the shuffles, and the result is dropped.
    const uint32_t pr = valid ? p : ctx - 1;
    const uint8_t* block = batch.slab + blocks[pr / tpb];
    float kx[kE], vx[kE];
    read_row<F>(block, layout, layer, 0, kvh, pr % tpb, part, kx);
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
    orow[j * D + d] = o / sum;
  }
}

template <uint32_t D, KvFormat F>
void launch_d_f(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch, const float* q,
                float* out, Stream stream) {
  const uint32_t group = heads / layout.geometry.num_kv_heads;
  const uint32_t chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const uint32_t gn = group < kMaxGroup ? group : kMaxGroup;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));  // as ops::attention rounds it
  launch("paged_attention", attention_kernel<D, F>, dim3(batch.n_tokens, layout.geometry.num_kv_heads, chunks),
         dim3(kWarps * 32), smem_bytes<D>(gn), stream, layout, layer, heads, batch, q, out, scale);
}

template <uint32_t D>
void launch_d(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch, const float* q,
              float* out, Stream stream) {
  switch (layout.geometry.format) {
    case KvFormat::F32: return launch_d_f<D, KvFormat::F32>(layout, layer, heads, batch, q, out, stream);
    case KvFormat::F16: return launch_d_f<D, KvFormat::F16>(layout, layer, heads, batch, q, out, stream);
    case KvFormat::BF16: return launch_d_f<D, KvFormat::BF16>(layout, layer, heads, batch, q, out, stream);
    case KvFormat::Fp8E4M3: return launch_d_f<D, KvFormat::Fp8E4M3>(layout, layer, heads, batch, q, out, stream);
    case KvFormat::Int8: return launch_d_f<D, KvFormat::Int8>(layout, layer, heads, batch, q, out, stream);
    case KvFormat::Int4: return launch_d_f<D, KvFormat::Int4>(layout, layer, heads, batch, q, out, stream);
  }
}

}  // namespace

void paged_attention(const kv::KvLayout& layout, uint32_t layer, uint32_t heads, const PagedBatch& batch,
                     const float* q, float* out, Stream stream) {
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
    case 8: return launch_d<8>(layout, layer, heads, batch, q, out, stream);
    case 16: return launch_d<16>(layout, layer, heads, batch, q, out, stream);
    case 32: return launch_d<32>(layout, layer, heads, batch, q, out, stream);
    case 64: return launch_d<64>(layout, layer, heads, batch, q, out, stream);
    case 128: return launch_d<128>(layout, layer, heads, batch, q, out, stream);
    case 256: return launch_d<256>(layout, layer, heads, batch, q, out, stream);
    default:
      throw std::invalid_argument("paged_attention: head_dim = " + std::to_string(g.head_dim) +
                                  " (the CUDA kernel supports 8, 16, 32, 64, 128 and 256)");
  }
}

}  // namespace fineserve::gpu
