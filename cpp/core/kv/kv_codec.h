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

}  // namespace fineserve::kv
