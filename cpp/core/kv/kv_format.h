// Element formats a KV cache can be stored in.
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

// Names as the TypeScript API spells them: "f32", "f16", "bf16", "fp8", "int8", "int4".
const char* format_name(KvFormat f);
bool parse_format(std::string_view name, KvFormat* out);

}  // namespace fineserve::kv
