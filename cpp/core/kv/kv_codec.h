// Encoding and decoding of one cached K or V row (head_dim values of one token and one KV head) in
// every KV format of kv_format.h. The attention kernels and the tests' layout checks go through
// here; KvLayout says where the row and its scale live.
#pragma once

#include <cstdint>

#include "kv/kv_format.h"

namespace fineserve::kv {

// Stores `n` values: the row's bytes at `row` (n * bits_per_element / 8 of them) and, for the
// formats with a scale, default_scale_bytes(format) bytes at `scale` (unused otherwise, may be
// null). n must be even for int4.
void encode_row(const float* src, KvFormat format, uint32_t n, uint8_t* row, uint8_t* scale);

// The stored row as float32 in `dst`; returns dst, except for f32, whose stored row is returned
// in place (attention reads it without a copy). `row` of an f32 cache must be 4-byte aligned,
// which KvLayout guarantees.
const float* decode_row(const uint8_t* row, const uint8_t* scale, KvFormat format, uint32_t n, float* dst);

// int4 K (kv_format.h): one head's K rows of one block, `rows` pointing at slot 0 (rows are
// row_bytes = d / 2 apart) and `params` at its channel params (KvLayout::k_params_at: d f16 steps,
// then d f16 minima). Appends the row `src` at `slot`; slots 0..slot-1 must hold the same
// sequence's earlier rows, written in order. Slot 0 starts the params from this row alone. A row
// outside a channel's range widens that channel's params and re-codes the channel's earlier codes
// from their decoded values. The block's state after slot s therefore depends only on the rows
// of slots 0..s, never on how they were grouped into steps or batched with other sequences.
void append_k_int4(const float* src, uint32_t d, uint32_t slot, uint8_t* rows, uint8_t* params);

// The block's channel params as floats: step[c] and minimum[c], c < d.
void load_k_params(const uint8_t* params, uint32_t d, float* step, float* minimum);

// One int4 K row decoded with its block's params: dst[c] = minimum[c] + step[c] * q[c].
void decode_k_int4(const uint8_t* row, const float* step, const float* minimum, uint32_t d, float* dst);

// fp8 K (kv_format.h): one head's K row at `slot` of a block, `params` at the head's references
// (KvLayout::k_params_at: d f16). Slot 0 sets the references to this row (f16, saturating, NaN as
// 0); every row, slot 0's included, stores e4m3(x - ref) per channel. Slot 0 of the block must be
// written before (or as) any later slot, as write_kv does in position order.
void append_k_fp8(const float* src, uint32_t d, uint32_t slot, uint8_t* row, uint8_t* params);

// The block's fp8 K references as floats, c < d.
void load_k_refs(const uint8_t* params, uint32_t d, float* ref);

// One fp8 K row decoded with its block's references: dst[c] = ref[c] + e4m3(row[c]).
void decode_k_fp8(const uint8_t* row, const float* ref, uint32_t d, float* dst);

}  // namespace fineserve::kv
