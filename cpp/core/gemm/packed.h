// Q8_0 and Q4_0 weights repacked for the integer GEMM: 16 rows interleaved per 32-element block,
// so that one 64-byte vector holds four consecutive elements of each of 16 rows and a dot-product
// instruction (vpdpbusd, or maddubs + madd on AVX2) advances 16 rows' sums at once, each in its own
// lane. The idea is ggml's repack for AVX2/AVX-512 (block_q4_0x8) and llamafile's tinyBLAS; the
// layout is fineserve's own.
//
// One group of 16 rows holds, per 32-block b (kPackScaleBytes + 8 * 64 or 4 * 64 bytes):
//   16 f16 scales, row order;
//   Q8_0: 8 vectors j = 0..7, lane r holds elements 4j..4j+3 of row r, each as (w + 128) (unsigned);
//   Q4_0: 4 vectors j = 0..3, lane r holds the file's bytes 4j..4j+3 of row r: low nibbles are
//         elements 4j..4j+3, high nibbles 16+4j..16+4j+3 (unsigned 0..15, the "- 8" not applied).
// So every weight byte is unsigned and x stays signed: sum(u * x) = dot + c * sum(x) with c = 128
// (Q8_0) or 8 (Q4_0), and the correction -c * sum(x) of each activation block is where the int32
// accumulators start. A last group past the matrix's rows is padded with zero scales.
//
// Batch invariance: every output is one lane of one accumulator, whose per-block integer sum is
// exact and whose float part is the same cvt, mul, fma sequence in every tile shape and at every
// SIMD level (the kernels of each level are bit-identical to packed_reference, test_gemm_packed.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/tensor.h"
#include "simd/dispatch.h"

namespace fineserve::gemm {

inline constexpr size_t kPackRows = 16;
inline constexpr size_t kPackScaleBytes = 2 * kPackRows;

struct PackedWeights {
  model::DType dtype = model::DType::Q8_0;  // Q8_0 or Q4_0
  size_t rows = 0, cols = 0, blocks = 0;    // blocks = cols / 32
  size_t block_bytes = 0;                   // one 32-block of a 16-row group
  size_t group_bytes = 0;                   // blocks * block_bytes
  std::vector<uint8_t> bytes;               // groups * group_bytes

  size_t groups() const { return (rows + kPackRows - 1) / kPackRows; }
  const uint8_t* block(size_t group, size_t b) const { return bytes.data() + group * group_bytes + b * block_bytes; }
};

// A tile reads several groups side by side, each a sequential stream of blocks: prefetching each
// stream this many blocks ahead keeps decode, which reads every weight once from DRAM, from
// waiting on each line (Q4_0 decode ran at half Q8_0's bandwidth without it). Harmless when the
// weights sit in L1/L2 during prefill; past the last group it touches nothing that can fault.
inline constexpr size_t kPrefetchBlocks = 4;
inline void prefetch_block(const uint8_t* p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
}

// True for the weight types this file repacks (packed_k.h has Q4_K / Q6_K).
bool packable(model::DType t);
// The 16-row interleaved copy of a Q8_0 / Q4_0 matrix (rows x cols, cols a multiple of 32).
std::shared_ptr<const PackedWeights> pack(model::DType t, const uint8_t* data, size_t rows, size_t cols);
// Row r of a packed matrix back in the file's block layout (tests: the repack loses nothing).
void unpack_row(const PackedWeights& w, size_t r, uint8_t* out);

// The copy linear() reads, made at load (gemm/packed_load.h) or on first use and kept in w.packed
// (copies of the view made before that make their own). Safe to call from several threads at
// once. Q4_K / Q6_K get packed_k.h's layout, W8A8 packed_w8a8.h's.
const PackedWeights& packed_for(const model::TensorView& w);
// The packed copy in whichever layout the type has: pack, pack_k or pack_w8a8.
std::shared_ptr<const PackedWeights> pack_any(model::DType t, const uint8_t* data, size_t rows, size_t cols);

// Activations of one call as the packed kernels read them: Q8_0 blocks (llama.cpp's x86
// quantize_row_q8_0, as quant::prepare_activations makes them) and each block's sum of q.
struct PackedActs {
  size_t tokens = 0, blocks = 0;  // per token: blocks * 32 int8
  std::vector<int8_t> q;
  std::vector<float> d;           // tokens x blocks
  std::vector<int32_t> sum;       // tokens x blocks
  void resize(size_t tokens, size_t blocks);
};

// Computes tokens x rows [r0, r1) of y = x W^T (+ bias); r0 a multiple of kPackRows.
using PackedFn = void (*)(const PackedWeights& w, const PackedActs& a, size_t tokens, size_t r0, size_t r1,
                          const float* bias, float* y, size_t y_stride);
using QuantizeFn = void (*)(const float* x, size_t tokens, size_t cols, PackedActs& out);

struct PackedKernels {
  QuantizeFn quantize;
  PackedFn q8_0, q4_0;
};

// The packed kernels of a SIMD level by resolve_kernel's rule (AVX-512 needs VNNI as well; none
// at Baseline, where linear() keeps its per-row path), or nullptr.
const PackedKernels* packed_kernels_for(simd::Level level);
PackedFn packed_kernel(const PackedKernels& k, model::DType t);

// The rule of packed_kernels_for and its siblings: each level's own kernels (nullptr: none, or
// not compiled in), AVX-512's only where the host has VNNI, resolved by resolve_kernel; nullptr
// when `level` is not this build's or this host's.
template <class K>
const K* resolve_packed(simd::Level level, const K* baseline, const K* avx2, const K* avx512_vnni) {
  if (simd::kernels_for(level) == nullptr) return nullptr;
  const K* by_level[simd::kLevelCount] = {baseline, avx2, nullptr};
#if defined(__x86_64__) || defined(__i386__)
  static const bool vnni = __builtin_cpu_supports("avx512vnni");
  if (vnni) by_level[static_cast<int>(simd::Level::Avx512)] = avx512_vnni;
#endif
  return simd::resolve_kernel(by_level, level);
}

// Portable versions: the arithmetic every level's kernels must reproduce bit for bit.
// packed_reference_kernels() holds them, for a view packed at load at a level without its own.
const PackedKernels& packed_reference_kernels();
void quantize_reference(const float* x, size_t tokens, size_t cols, PackedActs& out);
void packed_reference(const PackedWeights& w, const PackedActs& a, size_t tokens, size_t r0, size_t r1,
                      const float* bias, float* y, size_t y_stride);

// The packed path is on unless FINESERVE_GEMM_PACK=0 (read at each call, like FINESERVE_GEMM), so
// a benchmark can compare it with the row-layout GEMM in one process.
bool pack_enabled();

}  // namespace fineserve::gemm
