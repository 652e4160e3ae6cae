#include "kv/kv_geometry.h"

#include <stdexcept>

namespace fineserve::kv {

const char* format_name(KvFormat f) {
  switch (f) {
    case KvFormat::F32: return "f32";
    case KvFormat::F16: return "f16";
    case KvFormat::BF16: return "bf16";
    case KvFormat::Fp8E4M3: return "fp8";
    case KvFormat::Int8: return "int8";
    case KvFormat::Int4: return "int4";
  }
  return "unknown";
}

bool parse_format(std::string_view name, KvFormat* out) {
  for (KvFormat f : kAllKvFormats) {
    if (name == format_name(f)) {
      *out = f;
      return true;
    }
  }
  return false;
}

std::string validate(const KvGeometry& g) {
  auto bad = [](const char* field, uint64_t value, const char* why) {
    return std::string(field) + " = " + std::to_string(value) + ": " + why;
  };
  if (g.tokens_per_block == 0) return bad("tokensPerBlock", 0, "must be at least 1");
  if (g.tokens_per_block > 4096) return bad("tokensPerBlock", g.tokens_per_block, "must be at most 4096");
  if (g.num_layers == 0) return bad("layers", 0, "must be at least 1");
  if (g.num_layers > 1024) return bad("layers", g.num_layers, "must be at most 1024");
  if (g.num_kv_heads == 0) return bad("kvHeads", 0, "must be at least 1");
  if (g.num_kv_heads > 1024) return bad("kvHeads", g.num_kv_heads, "must be at most 1024");
  if (g.head_dim == 0) return bad("headDim", 0, "must be at least 1");
  if (g.head_dim > 1024) return bad("headDim", g.head_dim, "must be at most 1024");
  if (bits_per_element(g.format) == 0) return bad("format", static_cast<uint64_t>(g.format), "unknown KV format");
  if (g.format == KvFormat::Int4 && g.head_dim % 2 != 0) {
    return bad("headDim", g.head_dim, "must be even for int4 KV (two values per byte)");
  }
  if (g.scale_bytes > 64) return bad("scaleBytes", g.scale_bytes, "must be at most 64");
  return "";
}

KvLayout make_layout(const KvGeometry& g) {
  std::string err = validate(g);
  if (!err.empty()) throw std::invalid_argument("invalid KV geometry: " + err);
  KvLayout l{};
  l.geometry = g;
  l.row_bytes = static_cast<uint64_t>(g.head_dim) * bits_per_element(g.format) / 8;
  uint64_t slots = static_cast<uint64_t>(g.num_kv_heads) * g.tokens_per_block;
  l.data_bytes = slots * l.row_bytes;
  // Scales start on an 8-byte boundary so fp16/fp32 scales load aligned.
  l.scale_offset = align_up(l.data_bytes, 8);
  const uint64_t v_scales = slots * g.scale_bytes;
  const uint64_t k_scales = k_per_channel(g.format) ? g.num_kv_heads * k_params_bytes(g.format, g.head_dim) : v_scales;
  auto region = [&](uint64_t scales) { return align_up(scales ? l.scale_offset + scales : l.data_bytes, kRegionAlign); };
  l.region_bytes = region(k_scales);
  l.v_offset = l.region_bytes;
  l.v_region_bytes = region(v_scales);
  l.layer_stride = l.region_bytes + l.v_region_bytes;
  l.block_bytes = g.num_layers * l.layer_stride;
  // Unpadded bytes of one block, spread over its tokens.
  const uint64_t per_block = static_cast<uint64_t>(g.num_layers) * (2 * l.data_bytes + k_scales + v_scales);
  l.token_bytes = per_block / g.tokens_per_block;
  return l;
}

}  // namespace fineserve::kv
