// Element formats a KV cache can be stored in.
//
//   f32, f16, bf16  the value itself, no scale.
//   fp8             OCP E4M3 (quant/fp8.h) with scale 1.0, saturating at +-448: what vLLM's fp8 KV
//                   cache and the reference system's fp8_kv8 store. K/V of Llama-family models stay
//                   far below 448, and a scale-free row can be written without a pass over it.
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

// Bytes of the per token x head scale each format stores (KvGeometry::scale_bytes): an f16 for
// the integer formats (int4: V's; its K has per-channel params per block), none for the others.
constexpr uint32_t default_scale_bytes(KvFormat f) {
  return f == KvFormat::Int8 || f == KvFormat::Int4 ? 2 : 0;
}

// Names as the TypeScript API spells them: "f32", "f16", "bf16", "fp8", "int8", "int4".
const char* format_name(KvFormat f);
bool parse_format(std::string_view name, KvFormat* out);

}  // namespace fineserve::kv
