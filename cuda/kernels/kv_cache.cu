// write_kv: one step's K and V rows into their sequences' slab blocks, in the cache's format,
// byte for byte what kv::encode_row (cpp/core/kv/kv_codec.cc) stores, so a cache written by
// either backend reads back the same in both.
//
// int4's K is coded per channel over its block (kv::append_k_int4): write_k4_kernel runs one warp
// per (sequence's rows in the step, KV head), row after row in position order, each lane owning
// two channels (one byte of every row); it keeps the block's state after each row that a later
// row of the same step changes, for paged_attention (PagedBatch::k4_snapshots).
//
// fp8's K is coded against its block's slot-0 row (kv::append_k_fp8). The warp of a slot-0 row
// stores the references; a later row of the same block reads them from the slab when slot 0 was
// written by an earlier step, and otherwise rounds slot 0's source row itself (its sequence's rows
// in a step are consecutive, so that row is `slot` rows before it): the same f16 bits, and no
// warp waits for another.
//
// One warp per (token, KV head, K|V) row: the integer formats need the row's absolute maximum
// before any element is coded, and a warp reduces it with shuffles and no barrier. Lane c codes
// elements [8c, 8c + 8) and stores them in one piece (32, 16, 8, 8 or 4 bytes by format), which
// the layout keeps aligned: a row is a multiple of that piece and regions start 64-aligned.
#include <stdexcept>
#include <string>

#include "common/launch.cuh"
#include "common/numeric.cuh"
#include "kernels/kernels.h"

namespace fineserve::gpu {

namespace {

using kv::KvFormat;

constexpr unsigned kWarps = 4;
constexpr uint32_t kChunk = 8;        // elements per lane per store
constexpr uint16_t kF16Max = 0x7BFF;  // 65504

// 16- and 8-byte pieces stored as one access (the SIMT build has no uint4/uint2).
struct __align__(16) Words4 {
  uint32_t w[4];
};
struct __align__(8) Words2 {
  uint32_t w[2];
};

// Symmetric codes as kv_codec.cc's quantize_value: x / s rounded half to even, NaN as 0.
__device__ __forceinline__ int32_t quantize_value(float x, float s, float qmax) {
  if (!(s > 0)) return 0;
  float r = rintf(x / s);
  if (!(r == r)) return 0;
  r = r > qmax ? qmax : (r < -qmax ? -qmax : r);
  return static_cast<int32_t>(r);
}

__device__ __forceinline__ uint32_t pack16(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}
__device__ __forceinline__ uint32_t pack8(int32_t a, int32_t b, int32_t c, int32_t d) {
  return (static_cast<uint32_t>(a) & 0xFFu) | ((static_cast<uint32_t>(b) & 0xFFu) << 8) |
         ((static_cast<uint32_t>(c) & 0xFFu) << 16) | ((static_cast<uint32_t>(d) & 0xFFu) << 24);
}

// Codes one lane's 8 elements (x) into `dst`; s is the row's decoded f16 scale (integer formats).
template <KvFormat F>
__device__ __forceinline__ void store_chunk(const float (&x)[kChunk], float s, uint8_t* dst) {
  if constexpr (F == KvFormat::F32) {
    Words4* d = reinterpret_cast<Words4*>(dst);
    d[0] = Words4{{__float_as_uint(x[0]), __float_as_uint(x[1]), __float_as_uint(x[2]), __float_as_uint(x[3])}};
    d[1] = Words4{{__float_as_uint(x[4]), __float_as_uint(x[5]), __float_as_uint(x[6]), __float_as_uint(x[7])}};
  } else if constexpr (F == KvFormat::F16 || F == KvFormat::BF16) {
    uint16_t h[kChunk];
#pragma unroll
    for (uint32_t i = 0; i < kChunk; ++i) h[i] = F == KvFormat::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
    *reinterpret_cast<Words4*>(dst) = Words4{{pack16(h[0], h[1]), pack16(h[2], h[3]), pack16(h[4], h[5]), pack16(h[6], h[7])}};
  } else if constexpr (F == KvFormat::Fp8E4M3) {
    int32_t b[kChunk];
#pragma unroll
    for (uint32_t i = 0; i < kChunk; ++i) b[i] = f32_to_fp8(x[i]);
    *reinterpret_cast<Words2*>(dst) = Words2{{pack8(b[0], b[1], b[2], b[3]), pack8(b[4], b[5], b[6], b[7])}};
  } else if constexpr (F == KvFormat::Int8) {
    int32_t q[kChunk];
#pragma unroll
    for (uint32_t i = 0; i < kChunk; ++i) q[i] = quantize_value(x[i], s, 127.0f);
    *reinterpret_cast<Words2*>(dst) = Words2{{pack8(q[0], q[1], q[2], q[3]), pack8(q[4], q[5], q[6], q[7])}};
  } else {  // Int4: element 2i in the low nibble of byte i, two's complement
    uint32_t word = 0;
#pragma unroll
    for (uint32_t i = 0; i < kChunk; ++i) word |= (static_cast<uint32_t>(quantize_value(x[i], s, 7.0f)) & 0xFu) << (4 * i);
    *reinterpret_cast<uint32_t*>(dst) = word;
  }
}

// a * b + c rounded twice, as the host computes it (nvcc would fuse it into one fma).
__device__ __forceinline__ float mul_add(float a, float b, float c) {
#if FS_SIMT
  return a * b + c;
#else
  return __fadd_rn(__fmul_rn(a, b), c);
#endif
}

__device__ __forceinline__ uint16_t f16_saturating(float x) {
  uint16_t h = f32_to_f16(x);
  if ((h & 0x7FFFu) > kF16Max && (h & 0x7FFFu) <= 0x7C00u) h = static_cast<uint16_t>((h & 0x8000u) | kF16Max);
  return h;
}

// kv_codec.cc's k4_code: (x - minimum) / step rounded half to even, clamped to 0..15, NaN as 0.
__device__ __forceinline__ uint32_t k4_code(float x, float step, float minimum) {
  if (!(step > 0)) return 0;
  float r = rintf((x - minimum) / step);
  if (!(r == r)) return 0;
  r = r < 0 ? 0.0f : (r > 15.0f ? 15.0f : r);
  return static_cast<uint32_t>(r);
}

// Appends channel c's value x at `slot` (kv::append_k_int4 for one channel); `rows` is the head's
// slot 0, nibble `nib` of byte c / 2 of each row.
__device__ __forceinline__ void k4_append_channel(float x, uint32_t c, uint32_t d, uint32_t slot, uint8_t* rows,
                                                  uint16_t* params) {
  const uint32_t row_bytes = d / 2, shift = 4 * (c % 2);
  uint16_t sh = params[c], mh = params[d + c];
  if (slot == 0) {
    sh = 0;
    mh = f16_saturating(x == x ? x : 0.0f);
  } else {
    const float step = f16_to_f32(sh), minimum = f16_to_f32(mh);
    const float hi = mul_add(15.0f, step, minimum);
    const float lo2 = fminf(minimum, x), hi2 = fmaxf(hi, x);
    const uint16_t mh2 = f16_saturating(lo2);
    const uint16_t sh2 = f16_saturating((hi2 - f16_to_f32(mh2)) / 15.0f);
    if (mh2 != mh || sh2 != sh) {
      const float step2 = f16_to_f32(sh2), min2 = f16_to_f32(mh2);
      for (uint32_t s = 0; s < slot; ++s) {
        uint8_t* b = rows + s * row_bytes + c / 2;
        const uint32_t q = (*b >> shift) & 0xFu;
        const uint32_t q2 = k4_code(mul_add(step, static_cast<float>(q), minimum), step2, min2);
        *b = static_cast<uint8_t>((*b & ~(0xFu << shift)) | (q2 << shift));
      }
      sh = sh2;
      mh = mh2;
    }
  }
  params[c] = sh;
  params[d + c] = mh;
  uint8_t* b = rows + slot * row_bytes + c / 2;
  *b = static_cast<uint8_t>((*b & ~(0xFu << shift)) | (k4_code(x, f16_to_f32(sh), f16_to_f32(mh)) << shift));
}

__global__ void __launch_bounds__(kWarps * 32)
    write_k4_kernel(kv::KvLayout layout, uint32_t layer, PagedBatch batch, const float* k) {
  const kv::KvGeometry& g = layout.geometry;
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t item = blockIdx.x * kWarps + threadIdx.x / 32;  // (row, head), head fastest
  if (item >= batch.n_tokens * g.num_kv_heads) return;
  const uint32_t head = item % g.num_kv_heads, first = item / g.num_kv_heads;
  if (!k4_run_starts(batch, first)) return;  // the warp of the run's first row writes all of it
  const uint32_t d = g.head_dim, tpb = g.tokens_per_block;
  const uint64_t snap_bytes = k4_snapshot_row_bytes(layout);
  for (uint32_t r = first; r < batch.n_tokens && (r == first || !k4_run_starts(batch, r)); ++r) {
    const uint32_t pos = batch.token_pos[r], slot = pos % tpb;
    uint8_t* block = batch.slab + batch.block_offsets[batch.seq_first_block[batch.token_seq[r]] + pos / tpb];
    uint8_t* rows = block + layout.row_offset(layer, 0, head, 0);
    auto* params = reinterpret_cast<uint16_t*>(block + layout.k_params_at(layer, head));
    const float* src = k + (static_cast<size_t>(r) * g.num_kv_heads + head) * d;
    for (uint32_t c = 2 * lane; c < d; c += 64) {
      k4_append_channel(src[c], c, d, slot, rows, params);
      k4_append_channel(src[c + 1], c + 1, d, slot, rows, params);
    }
    if (batch.k4_snapshots != nullptr && k4_has_snapshot(batch, r, tpb)) {  // each lane copies the bytes it owns
      uint8_t* dst = batch.k4_snapshots + (static_cast<uint64_t>(r) * g.num_kv_heads + head) * snap_bytes;
      auto* dst_params = reinterpret_cast<uint16_t*>(dst + static_cast<uint64_t>(tpb) * (d / 2));
      for (uint32_t c = 2 * lane; c < d; c += 64) {
        for (uint32_t s = 0; s <= slot; ++s) dst[s * (d / 2) + c / 2] = rows[s * (d / 2) + c / 2];
        for (uint32_t i = 0; i < 2; ++i) {
          dst_params[c + i] = params[c + i];
          dst_params[d + c + i] = params[d + c + i];
        }
      }
    }
  }
}

template <KvFormat F>
__global__ void __launch_bounds__(kWarps * 32)
    write_kv_kernel(kv::KvLayout layout, uint32_t layer, PagedBatch batch, const float* k, const float* v) {
  const kv::KvGeometry& g = layout.geometry;
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t item = blockIdx.x * kWarps + threadIdx.x / 32;  // (token, head, K|V), K|V fastest
  if (item >= batch.n_tokens * g.num_kv_heads * 2) return;       // whole warps: no barrier below
  const uint32_t kv_sel = item % 2, head = (item / 2) % g.num_kv_heads, token = item / (2 * g.num_kv_heads);
  if (F == KvFormat::Int4 && kv_sel == 0) return;  // int4 K: write_k4_kernel
  const uint32_t d = g.head_dim;
  const float* src = (kv_sel == 0 ? k : v) + (static_cast<size_t>(token) * g.num_kv_heads + head) * d;
  const uint32_t seq = batch.token_seq[token], pos = batch.token_pos[token];
  const uint32_t slot = pos % g.tokens_per_block;
  uint8_t* block = batch.slab + batch.block_offsets[batch.seq_first_block[seq] + pos / g.tokens_per_block];

  float s = 0;
  if constexpr (F == KvFormat::Int8 || F == KvFormat::Int4) {
    const float qmax = F == KvFormat::Int8 ? 127.0f : 7.0f;
    float amax = 0;
    for (uint32_t i = lane; i < d; i += 32) amax = fmaxf(amax, fabsf(src[i]));  // fmaxf skips NaN, as fmax does
    amax = warp_max(amax);
    uint16_t h = f32_to_f16(amax / qmax);
    if ((h & 0x7FFFu) > kF16Max) h = kF16Max;
    s = f16_to_f32(h);
    if (lane == 0) *reinterpret_cast<uint16_t*>(block + layout.scale_at(layer, kv_sel, head, slot)) = h;
  }
  uint8_t* row = block + layout.row_offset(layer, kv_sel, head, slot);
  constexpr uint32_t chunk_bytes = kChunk * kv::bits_per_element(F) / 8;
  const bool k_ref = F == KvFormat::Fp8E4M3 && kv_sel == 0;
  uint16_t* refs = k_ref ? reinterpret_cast<uint16_t*>(block + layout.k_params_at(layer, head)) : nullptr;
  // Slot 0's source row when it is in this step (null: its references are in the slab already).
  const float* first = nullptr;
  if (k_ref && slot <= token && batch.token_seq[token - slot] == seq && batch.token_pos[token - slot] == pos - slot) {
    first = k + (static_cast<size_t>(token - slot) * g.num_kv_heads + head) * d;
  }
  for (uint32_t c = lane; c < d / kChunk; c += 32) {
    float x[kChunk];
#pragma unroll
    for (uint32_t i = 0; i < kChunk; ++i) x[i] = src[c * kChunk + i];
    if (k_ref) {
#pragma unroll
      for (uint32_t i = 0; i < kChunk; ++i) {
        uint16_t h;
        if (first != nullptr) {
          const float x0 = first[c * kChunk + i];
          h = f16_saturating(x0 == x0 ? x0 : 0.0f);
          if (slot == 0) refs[c * kChunk + i] = h;
        } else {
          h = refs[c * kChunk + i];
        }
        x[i] = x[i] - f16_to_f32(h);
      }
    }
    store_chunk<F>(x, s, row + c * chunk_bytes);
  }
}

template <KvFormat F>
void launch_write(const kv::KvLayout& layout, uint32_t layer, const PagedBatch& batch, const float* k, const float* v,
                  Stream stream) {
  const uint32_t rows = batch.n_tokens * layout.geometry.num_kv_heads * 2;
  launch("write_kv", write_kv_kernel<F>, dim3((rows + kWarps - 1) / kWarps), dim3(kWarps * 32), 0, stream, layout,
         layer, batch, k, v);
  if constexpr (F == KvFormat::Int4) {
    const uint32_t items = batch.n_tokens * layout.geometry.num_kv_heads;
    launch("write_kv_k4", write_k4_kernel, dim3((items + kWarps - 1) / kWarps), dim3(kWarps * 32), 0, stream, layout,
           layer, batch, k);
  }
}

}  // namespace

size_t k4_snapshot_bytes(const kv::KvLayout& layout, uint32_t n_tokens) {
  if (layout.geometry.format != KvFormat::Int4) return 0;
  return static_cast<size_t>(n_tokens) * layout.geometry.num_kv_heads * k4_snapshot_row_bytes(layout);
}

void write_kv(const kv::KvLayout& layout, uint32_t layer, const PagedBatch& batch, const float* k, const float* v,
              Stream stream) {
  const kv::KvGeometry& g = layout.geometry;
  if (g.scale_bytes < kv::default_scale_bytes(g.format)) {
    throw std::invalid_argument("scaleBytes = " + std::to_string(g.scale_bytes) + ": a " + kv::format_name(g.format) +
                                " KV cache needs " + std::to_string(kv::default_scale_bytes(g.format)));
  }
  if (g.head_dim == 0 || g.head_dim % kChunk != 0) {
    throw std::invalid_argument("write_kv: head_dim = " + std::to_string(g.head_dim) +
                                " (the CUDA kernels need a multiple of 8)");
  }
  if (layer >= g.num_layers) {
    throw std::invalid_argument("write_kv: layer " + std::to_string(layer) + " of a " + std::to_string(g.num_layers) +
                                "-layer cache");
  }
  if (batch.n_tokens == 0) return;
  switch (g.format) {
    case KvFormat::F32: return launch_write<KvFormat::F32>(layout, layer, batch, k, v, stream);
    case KvFormat::F16: return launch_write<KvFormat::F16>(layout, layer, batch, k, v, stream);
    case KvFormat::BF16: return launch_write<KvFormat::BF16>(layout, layer, batch, k, v, stream);
    case KvFormat::Fp8E4M3: return launch_write<KvFormat::Fp8E4M3>(layout, layer, batch, k, v, stream);
    case KvFormat::Int8: return launch_write<KvFormat::Int8>(layout, layer, batch, k, v, stream);
    case KvFormat::Int4: return launch_write<KvFormat::Int4>(layout, layer, batch, k, v, stream);
  }
}

}  // namespace fineserve::gpu
