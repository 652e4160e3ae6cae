// Byte layouts of the quantized weight types (model::DType), row by row. The only place that
// knows how many bytes a row of a type takes; the quantizer, the dequantizer, the dot-product
// kernels, the loaders and the GGUF writer all ask here. All multi-byte values are little-endian;
// "f16" is IEEE binary16, "e4m3" is FP8 E4M3 as in quant/fp8.h (max 448, S.1111.111 = NaN).
//
// GGUF block formats (llama.cpp's layouts, ggml-common.h); a row is a run of blocks, so its length
// must be a multiple of the block:
//   Q8_0  32 elements, 34 bytes: f16 d; int8 qs[32].                    w[j] = d * qs[j]
//   Q4_0  32 elements, 18 bytes: f16 d; uint8 qs[16]. Element j (< 16) is the low nibble of qs[j],
//         element j + 16 the high nibble of qs[j].                      w = d * (nibble - 8)
//   Q4_K  256 elements, 144 bytes: f16 d; f16 dmin; uint8 scales[12]; uint8 qs[128]. Eight
//         sub-blocks of 32 with a 6-bit scale sc[i] and min m[i]: for i < 4, sc = scales[i] & 63,
//         m = scales[i + 4] & 63; for i >= 4, sc = (scales[i + 4] & 15) | (scales[i - 4] >> 6) << 4,
//         m = (scales[i + 4] >> 4) | (scales[i] >> 6) << 4. Sub-blocks 2k and 2k + 1 share
//         qs[32k .. 32k + 31]: element l of sub-block 2k is the low nibble of qs[32k + l], of
//         sub-block 2k + 1 the high nibble.                             w = d * sc * q - dmin * m
//   Q6_K  256 elements, 210 bytes: uint8 ql[128]; uint8 qh[64]; int8 scales[16]; f16 d. Two halves
//         of 128 (h = 0, 1) use ql[64h ..], qh[32h ..], scales[8h ..]; within a half, for l < 32:
//           element l      q = (ql[l]      & 15) | ((qh[l] >> 0) & 3) << 4, scale scales[l / 16]
//           element l + 32 q = (ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4, scale scales[l / 16 + 2]
//           element l + 64 q = (ql[l]      >> 4) | ((qh[l] >> 4) & 3) << 4, scale scales[l / 16 + 4]
//           element l + 96 q = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4, scale scales[l / 16 + 6]
//                                                                       w = d * scale * (q - 32)
//
// fineserve formats (made at load from 16/32-bit weights). Every row is self-contained, takes any
// number of columns >= 1 and is padded with zero bytes to a multiple of 16 bytes, and its data
// part starts 16-byte aligned within the row, so a GPU kernel can use 16-byte loads when the tensor
// base is 16-byte aligned (fineserve's own buffers are). A "sub-block" is 32 elements packed
// Q4_0-style into 16 bytes: element j (< 16) of the sub-block in the low nibble of byte j, element
// j + 16 in the high nibble; nibbles past the last column are padding (see each format).
//   W8A8  [0, 4) f32 scale = amax / 127; [4, 16) zero; [16, 16 + cols) int8 q in -127..127,
//         q = round-half-away(w / scale).                               w = scale * q
//         Activations: input_scale applied, then per token int8 q = round-half-even(x / sx) with
//         sx = amax(x) / 127.
//   FP8   [0, 4) f32 scale = amax / 448; [4, 16) zero; [16, 16 + cols) e4m3 q = e4m3(w / scale)
//         (round to nearest even, saturating).                          w = scale * q
//         Activations: per token e4m3(x / sx) with sx = amax(x) / 448.
//   W4A16 Groups of `group` elements (a positive multiple of 32; the last group holds the rest).
//         G = ceil(cols / group) groups, S = ceil(cols / 32) sub-blocks.
//         [0, 4G) per group g: f16 scale[g] at 4g, f16 min[g] at 4g + 2 (asymmetric: scale =
//         (max - min) / 15 and min of the group, both rounded to f16); zero pad to H =
//         round_up(4G, 16); [H, H + 16 S) sub-blocks of nibbles q in 0..15, q = clamp(round((w -
//         min) / scale), 0, 15), padding nibbles 0.            w = scale[g] * q + min[g]
//         Activations: f32 (the "a16" is 16-bit on a GPU; on the CPU float is the more precise).
//   W4A8  FireQ: int4 weights with e4m3 group scales under an f32 per-row power-of-two scale.
//         [0, 4) f32 row_scale; [4, 4 + G) e4m3 gs[g]; zero pad to H = round_up(4 + G, 16);
//         [H, H + 16 S) sub-blocks of nibbles n = q + 8 with q symmetric in -7..7 (nibble 0 is
//         never written; padding nibbles are 8, i.e. q = 0).  w = (n - 8) * e4m3(gs[g]) * row_scale
//         row_scale = 2^ceil(log2(max_g(amax_g / 7) / 448)), so the largest group scale lands in
//         (224, 448] and the others keep E4M3's full range below it; a group scale that rounded
//         down far enough to clip is bumped to the next E4M3 value.
//         Activations: per token e4m3(x / sx) with sx = amax(x) / 448.
// Activations of the GGUF types: Q8_0 and Q4_0 quantize x to Q8_0 blocks as llama.cpp's x86
// quantize_row_q8_0 does (d = amax / 127 rounded to f16, q = round-half-even(x * 127 / amax)) and
// take integer dot products per block, as ggml_vec_dot_q8_0_q8_0 / q4_0_q8_0; Q4_K and Q6_K quantize x
// to Q8_K blocks of 256 and take integer dots per super-block, as ggml_vec_dot_q4_K_q8_K / q6_K_q8_K
// (quant/kquant_dot.h; with FINESERVE_GEMM=0 or FINESERVE_KQUANT_DOT=0, f32 x against decoded rows).
#pragma once

#include <cstdint>
#include <string>

#include "model/tensor.h"

namespace fineserve::quant {

// Default group size of W4A16 / W4A8 (AWQ's and GPTQ's usual 128).
inline constexpr uint32_t kDefaultGroup = 128;

// Elements per block of a GGUF block format (32 or 256); 1 for every other type.
uint32_t block_elements(model::DType t);

// Bytes of one row of `cols` elements. `group` is the group size of W4A16/W4A8 (ignored by the
// other types). Precondition: row_layout_error(t, cols, group) is empty.
uint64_t row_bytes(model::DType t, uint64_t cols, uint32_t group = 0);

// Empty when a row of `cols` elements can be stored as `t` with this group size; otherwise why
// not (e.g. "Q4_0 needs a row length that is a multiple of 32, got 172"). The fineserve formats
// take any cols >= 1 (a last partial group is stored as such); group must be a positive multiple
// of 32 for W4A16 and W4A8.
std::string row_layout_error(model::DType t, uint64_t cols, uint32_t group = 0);

// Offsets inside a row of the fineserve formats (see the layout comment above).
inline constexpr uint64_t kRowAlign = 16;
inline uint64_t round_up(uint64_t n, uint64_t m) { return (n + m - 1) / m * m; }
inline uint64_t groups_in_row(uint64_t cols, uint32_t group) { return (cols + group - 1) / group; }
// Where the int8 / e4m3 / nibble data of a row starts.
uint64_t row_data_offset(model::DType t, uint64_t cols, uint32_t group);

}  // namespace fineserve::quant
