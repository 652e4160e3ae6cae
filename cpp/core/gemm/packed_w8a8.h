// W8A8 (weight_format.h: int8 weights with an f32 scale per output row, int8 activations with one
// scale per token) through a register-blocked integer GEMM: the weight rows interleaved 16 at a
// time, as packed.h does for Q8_0, so that one 64-byte vector holds four consecutive elements of
// each of 16 rows and one vpdpbusd (or maddubs + madd on AVX2) advances 16 rows' sums at once.
// The per-row path it replaces (linear_qdot) read one row at a time against 4 tokens, so 16
// decoding sequences cost almost 16 times one.
//
// Layout, in PackedWeights (packed.h) with dtype W8A8: blocks = ceil(cols / 32), block_bytes = 512,
// group_bytes = blocks * 512. Per group of 16 rows and 32-column block b, 8 vectors j = 0..7: lane
// r holds elements 32b + 4j .. 32b + 4j + 3 of row r as (q + 128), unsigned (q in -127..127, so
// 1..255; columns past the row's end and rows past the matrix's hold 128, i.e. q = 0). After every
// group, `bytes` holds the f32 row scales, 16 per group in row order (0 for padding rows):
// w8a8_row_scales(). bytes.size() is the whole copy.
//
// Arithmetic (the same at every level, so all are bit-identical to w8a8_reference): per token one
// int32 accumulator per row, which starts at -128 * sum(q_x) (undoing the +128 of the weights) and
// takes every product in any order: integer addition is exact (modulo 2^32, and the true sum fits
// for rows shorter than 133k columns, as in qdot's W8A8 kernels). Then y = float(acc) * (sw * sx),
// plus the bias when there is one: the per-row kernels' formula, so the results equal theirs.
// Batch invariance follows: nothing about a token's output depends on the tile it sits in.
//
// W4A8 does not fit this scheme: its activations are E4M3 values, not integers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gemm/packed.h"
#include "model/tensor.h"
#include "simd/dispatch.h"

namespace fineserve::gemm {

inline constexpr size_t kW8A8BlockBytes = 8 * 64;

// The 16-row interleaved copy of a W8A8 matrix (rows x cols, rows in weight_format.h's layout).
std::shared_ptr<const PackedWeights> pack_w8a8(const uint8_t* data, size_t rows, size_t cols);
// Row r back in weight_format.h's W8A8 row layout (tests: the repack loses nothing).
void unpack_w8a8_row(const PackedWeights& w, size_t r, uint8_t* out);
// The f32 scales of rows 0 .. groups() * 16 - 1.
inline const float* w8a8_row_scales(const PackedWeights& w) {
  return reinterpret_cast<const float*>(w.bytes.data() + w.groups() * w.group_bytes);
}

// One call's activations: per token, `stride` int8 (cols rounded up to 32, zero padded), its
// scale sx = amax / 127 and the sum of its q. Exactly quant::prepare_activations' W8A8 q and scale.
struct W8A8Acts {
  size_t tokens = 0, stride = 0;
  std::vector<int8_t> q;
  std::vector<float> scale;
  std::vector<int32_t> sum;
  void resize(size_t tokens, size_t cols);
};

// x (tokens x cols), times input_scale[c] when it is not null, quantized per token.
using W8A8QuantizeFn = void (*)(const float* x, size_t tokens, size_t cols, const float* input_scale, W8A8Acts& out);
// Computes tokens x rows [r0, r1) of y = x W^T (+ bias); r0 a multiple of kPackRows.
using W8A8Fn = void (*)(const PackedWeights& w, const W8A8Acts& a, size_t tokens, size_t r0, size_t r1,
                        const float* bias, float* y, size_t y_stride);

struct W8A8Kernels {
  W8A8QuantizeFn quantize;
  W8A8Fn gemm;
  size_t unit_rows;  // rows one decode tile covers: linear() sizes its thread blocks by it
};

// The kernels of a SIMD level by resolve_kernel's rule (AVX-512 needs VNNI), or nullptr at
// Baseline, where linear() keeps its per-row path.
const W8A8Kernels* w8a8_kernels_for(simd::Level level);

// Portable versions: the arithmetic every level must reproduce bit for bit. The kernel table
// holds them, for a view packed at load (TensorView::packed_only) at a level without its own.
const W8A8Kernels& w8a8_reference_kernels();
void w8a8_quantize_reference(const float* x, size_t tokens, size_t cols, const float* input_scale, W8A8Acts& out);
void w8a8_reference(const PackedWeights& w, const W8A8Acts& a, size_t tokens, size_t r0, size_t r1, const float* bias,
                    float* y, size_t y_stride);

}  // namespace fineserve::gemm
