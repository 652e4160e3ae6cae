// Element formats a KV cache can be stored in.
//
//   f32, f16, bf16  the value itself, no scale.
//   fp8             OCP E4M3 (quant/fp8.h), saturating at +-448, no scale.
//                   K: relative to a per-block per-channel reference, x = ref_c + e4m3(x - ref_c),
//                   ref_c the f16 of the block's first K row (slot 0), kept per (block, KV head) in
//                   the K region's params array (kv_geometry.h). K's channels sit at large offsets
//                   that E4M3's 3 mantissa bits code coarsely: on stories260K eval.txt plain E4M3 K
//                   costs +2.7 % perplexity (+4.8 % with f32 V), the residual +0.7 %. The
//                   reference is fixed once slot 0 is written, so a row's code depends only on its
//                   block's first row and itself, never on batching or prefill chunking. A
//                   residual beyond +-448 saturates, as a plain E4M3 value would.
//                   V: plain E4M3 per element (+0.1 % alone), like vLLM's scale-1.0 fp8 cache.
//   int8            symmetric per token x KV head: q = round(x / s) in -127..127, s = amax / 127,
//                   kept as an f16 next to the row (the block's scale array, kv_geometry.h).
//   int4            two values per byte, element 2i in the low nibble and 2i + 1 in the high one.
//                   K (KIVI-style): per channel over the block, asymmetric: x = min_c + step_c * q,
//                   q in 0..15, with f16 step_c and min_c per (block, KV head, channel), kept in
//                   the K region's scale array (kv_geometry.h). K's channels sit at very different
//                   offsets (stories260K: +117 % perplexity with one symmetric scale per token x
//                   head, about +2 % per channel). The params grow as the block fills: a row
//                   outside a channel's range widens it and re-codes that channel's earlier rows
//                   (kv_codec.h, append_k_int4), so a block's state after a row depends only on
//                   its sequence's rows up to there.
//                   V: symmetric per token x KV head, q in -7..7 (two's complement, -8 never
//                   written), s = amax / 7 as f16, like int8.
#pragma once

#include <cstdint>
#include <string_view>

// What CUDA kernels call too (KvLayout's offsets, k_params_bytes) is compiled for the GPU as well.
#if defined(__CUDACC__)
#define FINESERVE_HOST_DEVICE __host__ __device__
#else
#define FINESERVE_HOST_DEVICE
#endif

namespace fineserve::kv {

enum class KvFormat : uint8_t { F32, F16, BF16, Fp8E4M3, Int8, Int4 };

inline constexpr KvFormat kAllKvFormats[] = {KvFormat::F32,     KvFormat::F16,  KvFormat::BF16,
                                             KvFormat::Fp8E4M3, KvFormat::Int8, KvFormat::Int4};

constexpr uint32_t bits_per_element(KvFormat f) {
  switch (f) {
    case KvFormat::F32: return 32;
    case KvFormat::F16:
    case KvFormat::BF16: return 16;
    case KvFormat::Fp8E4M3:
    case KvFormat::Int8: return 8;
    case KvFormat::Int4: return 4;
  }
  return 0;
}

// Whether K is coded per channel over each block with params kept once per (block, KV head)
// (KvLayout::k_params_at): int4's step and minimum, fp8's reference.
constexpr bool k_per_channel(KvFormat f) { return f == KvFormat::Int4 || f == KvFormat::Fp8E4M3; }

// Bytes of those params per (block, KV head): int4 d f16 steps then d f16 minima, fp8 d f16
// references; 0 for the other formats.
FINESERVE_HOST_DEVICE constexpr uint64_t k_params_bytes(KvFormat f, uint32_t head_dim) {
  return f == KvFormat::Int4 ? 4ull * head_dim : f == KvFormat::Fp8E4M3 ? 2ull * head_dim : 0;
}

// Bytes of the per token x head scale each format stores (KvGeometry::scale_bytes): an f16 for
// the integer formats (int4: V's; its K has per-channel params per block), none for the others.
constexpr uint32_t default_scale_bytes(KvFormat f) {
  return f == KvFormat::Int8 || f == KvFormat::Int4 ? 2 : 0;
}

// Names as the TypeScript API spells them: "f32", "f16", "bf16", "fp8", "int8", "int4".
const char* format_name(KvFormat f);
bool parse_format(std::string_view name, KvFormat* out);

}  // namespace fineserve::kv
