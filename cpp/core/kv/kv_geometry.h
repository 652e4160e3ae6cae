// The shape of one model's KV blocks and where every byte of a block lives. This is the only place
// that computes offsets inside a block: the slab, the CPU executor and the CUDA kernels all use
// KvLayout, so a layout change cannot leave one of them behind.
//
// A block holds `tokens_per_block` tokens of *every* layer of its model, K and V, so one block id
// serves the whole model and models of different depth share one pool (the reference system keys
// its pools by layer count instead and splits memory between them statically).
//
// Block layout, each region aligned to kRegionAlign bytes:
//   for layer in [0, num_layers):
//     for kv in {K, V}:
//       data   [num_kv_heads][tokens_per_block][row_bytes]      row = head_dim elements
//       scales [num_kv_heads][tokens_per_block][scale_bytes]    (absent when scale_bytes == 0)
// except int4's and fp8's K (kv_format.h), whose params are per channel over the block:
//       params [num_kv_heads][2][head_dim] f16                  int4: step, then minimum, per channel
//       params [num_kv_heads][head_dim] f16                     fp8: the reference (slot 0's row)
// so their K and V regions differ in size (v_offset says where V starts).
// Heads outermost and tokens contiguous within a head: attention for one head streams one run.
#pragma once

#include <cstdint>
#include <string>

#include "kv/kv_format.h"

// The offset functions are compiled for the GPU too (FINESERVE_HOST_DEVICE, kv_format.h): CUDA
// kernels address slab blocks with them.

namespace fineserve::kv {

inline constexpr uint64_t kRegionAlign = 64;

struct KvGeometry {
  uint32_t tokens_per_block = 16;
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  KvFormat format = KvFormat::F16;
  // Per token, per KV head, per K or V: e.g. 2 for an fp16 scale, 4 for fp16 scale + zero point.
  uint32_t scale_bytes = 0;
};

// Empty when the geometry is usable; otherwise names the first bad field and its value.
std::string validate(const KvGeometry& g);

inline constexpr uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// Byte offsets within one block, derived once from a valid geometry.
struct KvLayout {
  KvGeometry geometry;
  uint64_t row_bytes;       // one head's K (or V) for one token
  uint64_t data_bytes;      // num_kv_heads * tokens_per_block * row_bytes
  uint64_t scale_offset;    // start of the scale (or int4 K channel params) array within a region
  uint64_t region_bytes;    // data + scales, aligned: one layer's K
  uint64_t v_offset;        // start of one layer's V region (== region_bytes)
  uint64_t v_region_bytes;  // one layer's V (== region_bytes except for int4 and fp8)
  uint64_t layer_stride;    // region_bytes + v_region_bytes
  uint64_t block_bytes;     // num_layers * layer_stride
  // Bytes one token needs, all layers, K and V, with scales: exact, except that int4's and fp8's
  // per-block K channel params are spread over the block's tokens (rounded down, so a block always holds
  // tokens_per_block * token_bytes).
  uint64_t token_bytes;

  // Offset of head `head`'s row for token slot `slot` (0 <= slot < tokens_per_block) of layer
  // `layer`, K when kv == 0 and V when kv == 1.
  FINESERVE_HOST_DEVICE constexpr uint64_t row_offset(uint32_t layer, uint32_t kv, uint32_t head, uint32_t slot) const {
    return layer * layer_stride + kv * v_offset +
           (static_cast<uint64_t>(head) * geometry.tokens_per_block + slot) * row_bytes;
  }
  // The per-token scale of a row (int8 K and V, int4 V); not int4's or fp8's K, see k_params_at.
  FINESERVE_HOST_DEVICE constexpr uint64_t scale_at(uint32_t layer, uint32_t kv, uint32_t head, uint32_t slot) const {
    return layer * layer_stride + kv * v_offset + scale_offset +
           (static_cast<uint64_t>(head) * geometry.tokens_per_block + slot) * geometry.scale_bytes;
  }
  // int4 / fp8 K: head `head`'s channel params in this block (kv::k_params_bytes): int4 head_dim
  // f16 steps then head_dim f16 minima, fp8 head_dim f16 references.
  FINESERVE_HOST_DEVICE constexpr uint64_t k_params_at(uint32_t layer, uint32_t head) const {
    return layer * layer_stride + scale_offset + static_cast<uint64_t>(head) * k_params_bytes();
  }
  FINESERVE_HOST_DEVICE constexpr uint64_t k_params_bytes() const {
    return kv::k_params_bytes(geometry.format, geometry.head_dim);
  }
};

// Throws std::invalid_argument with validate()'s message on a bad geometry.
KvLayout make_layout(const KvGeometry& g);

}  // namespace fineserve::kv
