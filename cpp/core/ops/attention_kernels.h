// The inner kernels of the blocked (flash-style) CPU attention of ops/attention.cc, one table per
// SIMD level. A call works on a tile of query rows (several tokens of one sequence times the query
// heads of one KV head) against one chunk of a KV block: keys decoded once into a transposed
// [d][kp] buffer, so the score of every (row, key) pair is a lane of its own, and values as
// [key][d] rows.
//
// Batch and chunk invariance: every row's arithmetic is fixed by the row and the chunk alone, never
// by the tile around it. A score is one multiply-add chain over the channels in increasing order;
// a row's softmax step sees only its own lanes, its masked lanes forced to -inf / 0 before any
// reduction, and reduces them in one fixed order (kp is fixed by the block geometry); the value
// sum takes the row's visible keys in increasing order. How many rows a call holds, and which of
// them run side by side in registers, change only the speed. test_attention_invariance.cc checks it.
//
// Scores are in the log2 domain: the caller folds log2(e) / sqrt(d) into the queries, so the
// softmax uses 2^x, computed by exp2 below (a degree-7 polynomial, within about 1 ulp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "simd/dispatch.h"

namespace fineserve::ops {

struct AttnKernels {
  // Keys per vector: a chunk's kp (score lanes per row) is its key count rounded up to this.
  uint32_t lanes;
  // An fp8 (E4M3) row as float, plus the block's K references when `ref` is not null: the same
  // values as kv::decode_row / kv::decode_k_fp8 (the decode is exact, the reference add one
  // rounding), 8 codes per step where the level has vectors.
  void (*fp8_row)(const uint8_t* codes, size_t n, const float* ref, float* dst);
  // int4 rows as kv_codec decodes them (the same bits: every product there is exact, so fused
  // or not it rounds once): K, minimum[c] + step[c] * q with q the unsigned nibble; V, scale times
  // the signed nibble. Element 2i is byte i's low nibble. n even.
  void (*int4_k_row)(const uint8_t* codes, const float* step, const float* minimum, size_t n, float* dst);
  void (*int4_v_row)(const uint8_t* codes, float scale, size_t n, float* dst);
  // kt[c * kp + i] = rows[i * d + c] for i < n, 0 for n <= i < kp; c < d. Moves data only.
  void (*transpose)(const float* rows, size_t n, size_t d, float* kt, size_t kp);
  // s[r * kp + i] = sum over c < d, ascending, of q[r * d + c] * kt[c * kp + i]; r < rows, i < kp.
  void (*scores)(const float* q, size_t rows, size_t d, const float* kt, size_t kp, float* s);
  // One row's online-softmax step over the first n of its kp scores `s` (n >= 1): the running
  // maximum *m and sum *l move to this chunk, s becomes the weights 2^(s - m) (0 past n), and the
  // factor that rescales the row's earlier sum, 2^(m_old - m_new) (0 while m_old is -inf), is
  // returned.
  float (*softmax)(float* s, size_t kp, size_t n, float* m, float* l);
  // acc[r] = acc[r] * alpha[r] + sum over i < n[r], ascending, of p[r * kp + i] * v[i * d .. +d];
  // the multiply is skipped where alpha[r] == 1 (exact either way).
  void (*accumulate)(const float* p, size_t kp, const float* alpha, const uint32_t* n, size_t rows,
                     const float* v, size_t d, float* acc);
};

// The table of a level by simd::resolve_kernel's rule (AVX-512 runs AVX2's; Baseline is portable).
const AttnKernels& attn_kernels(simd::Level level);

}  // namespace fineserve::ops
