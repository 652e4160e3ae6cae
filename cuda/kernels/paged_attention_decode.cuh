// What both paged_attention kernels share: reading a cached K or V row out of a slab block in any
// KV format, eight elements at a time, as floats equal to what kv::decode_row gives.
#pragma once

#include <cmath>

#include "common/cuda_lang.cuh"
#include "common/numeric.cuh"
#include "kernels/kernels.h"

namespace fineserve::gpu {

namespace {

using kv::KvFormat;

constexpr unsigned kWarps = 4;
constexpr uint32_t kE = 8;         // elements of a row per decode_chunk
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

// Elements part * kE .. part * kE + kE - 1 of KV head `head`'s K (kv 0) or V (kv 1) row in `slot`
// (int4: V only, its K is read_k4's). fp8 K adds its block's per-channel references
// (kv::decode_k_fp8: ref + e4m3).
template <KvFormat F>
__device__ __forceinline__ void read_row(const uint8_t* block, const kv::KvLayout& layout, uint32_t layer, uint32_t kv,
                                         uint32_t head, uint32_t slot, uint32_t part, float (&x)[kE]) {
  constexpr uint32_t chunk_bytes = kE * kv::bits_per_element(F) / 8;
  float s = 0;
  if constexpr (F == KvFormat::Int8 || F == KvFormat::Int4) s = load_f16_scale(block + layout.scale_at(layer, kv, head, slot));
  decode_chunk<F>(block + layout.row_offset(layer, kv, head, slot) + part * chunk_bytes, s, x);
  if constexpr (F == KvFormat::Fp8E4M3) {
    if (kv == 0) {
      // Params start 8-byte aligned (KvLayout::scale_offset): two 8-byte loads.
      const Words2* r = reinterpret_cast<const Words2*>(block + layout.k_params_at(layer, head) + part * kE * 2);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t w = r[i / 2].w[i % 2];
        x[2 * i] = f16_to_f32(static_cast<uint16_t>(w)) + x[2 * i];
        x[2 * i + 1] = f16_to_f32(static_cast<uint16_t>(w >> 16)) + x[2 * i + 1];
      }
    }
  }
}

// int4 K (kv::decode_k_int4): elements part * kE .. of the row in `slot` of one head's K rows, with
// the block's channel params (head_dim steps, then head_dim minima). The row kernel is the only
// one that reads an int4 cache: a prefill token may need its own block from its snapshot.
__device__ __forceinline__ void read_k4(const uint8_t* rows, const uint16_t* params, uint32_t d, uint32_t slot,
                                        uint32_t part, float (&x)[kE]) {
  const uint32_t w = *reinterpret_cast<const uint32_t*>(rows + slot * (d / 2) + part * 4);
#pragma unroll
  for (uint32_t i = 0; i < kE; ++i) {
    const uint32_t c = part * kE + i;
    x[i] = f16_to_f32(params[d + c]) + f16_to_f32(params[c]) * static_cast<float>((w >> (4 * i)) & 0xFu);
  }
}

// Where row `token` reads int4 K position p (in `block`) from: its snapshot when p is in the
// token's own block and a later row of the step changed that block, else the block itself.
__device__ __forceinline__ void k4_source(const PagedBatch& batch, const kv::KvLayout& layout, uint32_t layer,
                                          uint32_t kvh, uint32_t token, uint32_t p, const uint8_t* block,
                                          const uint8_t*& rows, const uint16_t*& params) {
  const uint32_t tpb = layout.geometry.tokens_per_block;
  if (batch.k4_snapshots != nullptr && p / tpb == batch.token_pos[token] / tpb && k4_has_snapshot(batch, token, tpb)) {
    rows = batch.k4_snapshots + (uint64_t{token} * layout.geometry.num_kv_heads + kvh) * k4_snapshot_row_bytes(layout);
    params = reinterpret_cast<const uint16_t*>(rows + uint64_t{tpb} * layout.row_bytes);
  } else {
    rows = block + layout.row_offset(layer, 0, kvh, 0);
    params = reinterpret_cast<const uint16_t*>(block + layout.k_params_at(layer, kvh));
  }
}

// exp(a - m), 0 for a state that saw no position yet (a == -inf), whatever m is.
__device__ __forceinline__ float weight(float a, float m) { return a == -INFINITY ? 0.0f : __expf(a - m); }

}  // namespace

}  // namespace fineserve::gpu
