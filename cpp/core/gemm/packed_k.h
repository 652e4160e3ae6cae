// Q4_K and Q6_K weights repacked for the integer GEMM, the K-quant sibling of packed.h: 16 rows
// interleaved per 256-element super-block, so that one 64-byte vector holds four consecutive
// codes of each of 16 rows and a dot-product instruction (vpdpbusd, or maddubs + madd on AVX2)
// advances 16 rows' sums at once, each in its own int32 lane. The sub-block scales and mins, which
// the file packs in 6 bits (Q4_K) or as int8 (Q6_K), are laid out once as byte pairs per lane, so
// the kernel widens them with one instruction instead of decoding bit fields per call. The idea is
// ggml's repack (block_q4_Kx8, block_q6_Kx8) and llamafile's tinyBLAS; the layout is fineserve's own.
//
// One group of 16 rows holds, per super-block b, lane r = row % 16:
//   Q4_K (2,368 bytes, the file's 16 x 144 = 2,304 plus the unpacked scales):
//     0     d[16], dmin[16]                f16, row order
//     64    scale pairs [4][16][2]         u8: pair k of lane r = (sc[2k], sc[2k+1])
//     192   min pairs   [4][16][2]         u8: (m[2k], m[2k+1])
//     320   codes [4 chunks c][8 steps i][64]: lane r's 4 bytes are the file's quant bytes
//           32c + 4i .. + 3, whose low nibbles are elements 4i.. of sub-block 2c and high nibbles
//           the same of sub-block 2c + 1 (unsigned 0..15).
//   Q6_K (3,360 bytes, the file's 16 x 210):
//     0     d[16]                          f16
//     32    scale pairs [8][16][2]         i8: (sc[2k], sc[2k+1]) of the sixteen 16-element sub-blocks
//     288   codes [2 halves h][8 steps i][3][64]: lane r's 4 bytes of the three vectors are the
//           file's ql bytes 64h + 4i.., ql bytes 64h + 32 + 4i.., and qh bytes 32h + 4i..; they
//           hold the 6-bit codes (unsigned 0..63) of elements 128h + 32q + 4i .. + 3, q = 0..3:
//           q = 0: ql_a & 15 | (qh & 3) << 4      q = 1: ql_b & 15 | (qh >> 2 & 3) << 4
//           q = 2: ql_a >> 4 | (qh >> 4 & 3) << 4  q = 3: ql_b >> 4 | (qh >> 6 & 3) << 4
// A last group past the matrix's rows is zero (zero scales: its lanes compute 0 and are not stored).
//
// Arithmetic: exactly quant/kquant_dot.h's, per row and token: one exact int32 sum per super-block
// (S and M there) and then its one or two float FMAs, so every level's kernel is bit-identical to
// the portable kquant::dot_q4_k / dot_q6_k on the file's rows and to packed_k_reference here, and a
// token's outputs do not depend on how many tokens share the call (batch invariance).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gemm/packed.h"
#include "quant/kquant_dot.h"
#include "simd/dispatch.h"

namespace fineserve::gemm {

inline constexpr size_t kQ4KPackedBlock = 2368;
inline constexpr size_t kQ6KPackedBlock = 3360;
// Offsets inside one packed super-block of a 16-row group (layout above).
inline constexpr size_t kQ4KScales = 64, kQ4KMins = 192, kQ4KCodes = 320;
inline constexpr size_t kQ6KScales = 32, kQ6KCodes = 288;

// True for Q4_K and Q6_K.
bool packable_k(model::DType t);
// The 16-row interleaved copy of a Q4_K / Q6_K matrix (cols a multiple of 256), in the same
// PackedWeights as Q8_0 / Q4_0 (blocks = cols / 256).
std::shared_ptr<const PackedWeights> pack_k(model::DType t, const uint8_t* data, size_t rows, size_t cols);
// Row r back in the file's super-block layout, byte for byte (tests; readers of a released file copy).
void unpack_k_row(const PackedWeights& w, size_t r, uint8_t* out);

// Q8_K activations as the packed kernels read them: quant::kquant::Q8K plus, for Q4_K's mins, the
// sums of each 32-element sub-block (bsums[2j] + bsums[2j + 1], 8 int16 per super-block).
struct PackedKActs {
  quant::kquant::Q8K q8;
  std::vector<int16_t> bsums32;  // tokens x blocks x 8
};

// Computes tokens x rows [r0, r1) of y = x W^T (+ bias); r0 a multiple of kPackRows.
using PackedKFn = void (*)(const PackedWeights& w, const PackedKActs& a, size_t tokens, size_t r0, size_t r1,
                           const float* bias, float* y, size_t y_stride);
using QuantizeKFn = void (*)(const float* x, size_t tokens, size_t cols, PackedKActs& out);

struct PackedKKernels {
  QuantizeKFn quantize;
  PackedKFn q4_k, q6_k;
};

// The kernels of a level by resolve_kernel's rule: the portable reference at Baseline, AVX2, and
// AVX-512 where the host has VNNI (else AVX2's).
const PackedKKernels* packed_k_kernels_for(simd::Level level);
PackedKFn packed_k_kernel(const PackedKKernels& k, model::DType t);

// Portable versions: the arithmetic every level's kernels reproduce bit for bit.
void quantize_k_reference(const float* x, size_t tokens, size_t cols, PackedKActs& out);
void packed_k_reference(const PackedWeights& w, const PackedKActs& a, size_t tokens, size_t r0, size_t r1,
                        const float* bias, float* y, size_t y_stride);
// Fills a.bsums32 from a.q8.bsums (every quantizer's last step).
void sum_sub_blocks(PackedKActs& a);

}  // namespace fineserve::gemm
