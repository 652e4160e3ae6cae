// Element formats a KV cache can be stored in.
//
//   f32, f16, bf16  the value itself, no scale.
//   fp8             OCP E4M3 (quant/fp8.h) with scale 1.0, saturating at +-448: what vLLM's fp8 KV
//                   cache and the reference system's fp8_kv8 store. K/V of Llama-family models stay
//                   far below 448, and a scale-free row can be written without a pass over it.
//   int8            symmetric per token x KV head: q = round(x / s) in -127..127, s = amax / 127,
//                   kept as an f16 next to the row (the block's scale array, kv_geometry.h).
//   int4            symmetric per token x KV head (FireQ-style, one group = head_dim): q in -7..7,
//                   s = amax / 7 as f16, two values per byte, element 2i in the low nibble and
//                   2i + 1 in the high one, two's complement. -8 is never written, so the grid is
//                   symmetric and the row's largest magnitude is represented exactly (x = 7 s).
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
// the integer formats, none for the others.
constexpr uint32_t default_scale_bytes(KvFormat f) {
  return f == KvFormat::Int8 || f == KvFormat::Int4 ? 2 : 0;
}

// Names as the TypeScript API spells them: "f32", "f16", "bf16", "fp8", "int8", "int4".
const char* format_name(KvFormat f);
bool parse_format(std::string_view name, KvFormat* out);

}  // namespace fineserve::kv
