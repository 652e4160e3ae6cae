// One row per weight type (model::DType), in the spirit of ggml's type_traits / type_traits_cpu:
// everything that differs between weight types and is not a kernel's body is a field of its
// row, and the code that used to switch on the type reads the row instead (row bytes, block
// geometry, the activation preparation linear() makes, the row dots per SIMD level, the reference
// decoder, the encoder, what the load-time scan tests, whether the CUDA backend reads it).
//
// Adding a weight format is one row in kWeightTypes (weight_traits.cc) plus its kernels:
//   - a DType value (model/tensor.h) and its byte layout (the comment in weight_format.h);
//   - decode (dequantize.cc), mandatory for every row;
//   - encode (quantize.cc) when PTQ or the GGUF writer should make it;
//   - row_dot[Baseline] (qdot.cc) when `act` is not ActPrep::None, and optionally wider levels
//     (qdot_avx2.cc, qdot_avx512.cc) that fall back by simd::resolve_kernel's rule;
//   - the CUDA GEMV/GEMM instantiations (cuda/kernels/linear.cu's table) when gpu is Native.
// check_weight_traits() (run once, on first use of row_dot(), and by test_weight_traits.cc)
// rejects a row that lacks what its fields promise.
#pragma once

#include <cstdint>
#include <string>

#include "model/tensor.h"
#include "quant/qdot.h"
#include "quant/row_kernels.h"
#include "simd/dispatch.h"

namespace fineserve::quant {

// What linear() quantizes the activations to before the row dots (prepare_activations).
enum class ActPrep : uint8_t {
  None,          // no row dot: weight rows are widened to f32 (F32 read in place; F16/BF16 fused
                 // with the dot for few tokens) and dotted with simd::Kernels::dot_f32
  F32,           // f32 copies, input_scale applied (W4A16)
  Q8Blocks,      // llama.cpp's Q8_0 blocks of 32 with f16 scales (Q8_0)
  Q8BlocksQ4,    // the same plus the per-pair "- 8" offsets of Q4_0's nibbles (Q4_0)
  I8PerToken,    // int8, one scale per token (W8A8)
  E4M3PerToken,  // E4M3 values (decoded to f32), one scale per token (FP8, W4A8)
};

// How the CUDA backend serves a weight type in linear().
enum class GpuSupport : uint8_t {
  Native,     // its GEMV/GEMM read the type in place
  WidenF16,   // uploaded widened to F16 (cuda/engine/device_weights.cc)
};

using HalfWiden = void (*)(const uint16_t* src, float* dst, size_t n);
using HalfDot = float (*)(const uint16_t* a, const float* b, size_t n);

struct WeightTypeTraits {
  model::DType type;
  const char* name;             // "Q4_K", "W4A16": dtype_name()
  uint32_t block_size;          // elements per block: 32 / 256 for the GGUF block types, else 1
  uint32_t block_bytes;         // bytes per block of the plain and GGUF block types; 0 for the
                                // fineserve row formats, whose rows have a header (row_bytes)
  bool grouped;                 // takes a group size (W4A16, W4A8)
  uint64_t (*row_bytes)(uint64_t cols, uint32_t group);
  uint64_t (*data_offset)(uint64_t cols, uint32_t group);  // where a row's data starts
  ActPrep act;
  RowDot row_dot[simd::kLevelCount];  // by simd::Level; nullptr: the level below's (resolve_kernel)
  DecodeRow decode;             // the reference decoding every kernel agrees with
  // Plain 16-bit types: the simd::Kernels entries that widen a run of elements and dot a row
  // with f32 activations in registers (linear()'s decode-time path); null for the others.
  HalfWiden simd::Kernels::*widen;
  HalfDot simd::Kernels::*fused_dot;
  EncodeRow encode;             // nullptr: nothing quantizes to it
  // The load-time scan (weight_scan.cc): GGUF blocks are finite exactly when these f16 scales
  // of each block are (offsets within the block).
  uint16_t finite_scales[2];
  uint8_t finite_scale_count;
  GpuSupport gpu;

  // Bytes per element of a plain type; 0 for the quantized ones.
  uint64_t element_bytes() const { return block_size == 1 ? block_bytes : 0; }
};

// The row of a weight type (every DType has one).
const WeightTypeTraits& traits(model::DType t);

// Every row, in DType order.
const WeightTypeTraits* weight_types_begin();
const WeightTypeTraits* weight_types_end();
struct WeightTypeRange {
  const WeightTypeTraits* begin() const { return weight_types_begin(); }
  const WeightTypeTraits* end() const { return weight_types_end(); }
};
inline WeightTypeRange all_weight_types() { return {}; }

// The row dot of type t at `level` by the fallback rule; nullptr when act == ActPrep::None.
RowDot row_dot(model::DType t, simd::Level level);

// What is wrong with the table ("" when nothing): a row out of DType order, a row without a
// decoder or block geometry, a row whose act promises a row dot without a baseline one (or
// the reverse), an F16/BF16-style row with only one of widen/fused_dot.
std::string check_weight_traits();

}  // namespace fineserve::quant
