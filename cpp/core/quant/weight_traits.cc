#include "quant/weight_traits.h"

#include <iterator>
#include <stdexcept>

#include "quant/weight_format.h"

namespace fineserve::quant {

using model::DType;

namespace {

// Row bytes and data offsets of the layouts in weight_format.h.
template <uint64_t kBlock, uint64_t kBytes>
uint64_t block_row(uint64_t cols, uint32_t) { return cols / kBlock * kBytes; }
uint64_t no_offset(uint64_t, uint32_t) { return 0; }
// W8A8, FP8: a 16-byte header (f32 scale), then one byte per element.
uint64_t byte_row(uint64_t cols, uint32_t) { return round_up(kRowAlign + cols, kRowAlign); }
uint64_t byte_offset(uint64_t, uint32_t) { return kRowAlign; }
// W4A16: f16 scale and min per group; W4A8: f32 row scale, then one e4m3 scale per group.
uint64_t w4a16_offset(uint64_t cols, uint32_t group) { return round_up(4 * groups_in_row(cols, group), kRowAlign); }
uint64_t w4a8_offset(uint64_t cols, uint32_t group) { return round_up(4 + groups_in_row(cols, group), kRowAlign); }
template <uint64_t (*kOffset)(uint64_t, uint32_t)>
uint64_t nibble_row(uint64_t cols, uint32_t group) { return kOffset(cols, group) + 16 * ((cols + 31) / 32); }

#if defined(FINESERVE_HAVE_AVX2)
#define FINESERVE_AVX2(f) dot_avx2::f
#else
#define FINESERVE_AVX2(f) nullptr
#endif
#define FINESERVE_DOTS(f) {dot_baseline::f, FINESERVE_AVX2(f), nullptr}
#define FINESERVE_NO_DOTS {nullptr, nullptr, nullptr}

using K = simd::Kernels;
using A = ActPrep;
using G = GpuSupport;

// One row per DType, in enum order. Columns: type, name, block size, block bytes, grouped,
// row bytes, data offset, activations, row dots {baseline, avx2, avx512}, decode, widen,
// fused dot, encode, finite scales, count, gpu.
const WeightTypeTraits kWeightTypes[] = {
    {DType::F32, "F32", 1, 4, false, block_row<1, 4>, no_offset, A::None, FINESERVE_NO_DOTS, decode::f32,
     nullptr, nullptr, nullptr, {}, 0, G::Native},
    {DType::F16, "F16", 1, 2, false, block_row<1, 2>, no_offset, A::None, FINESERVE_NO_DOTS, decode::f16,
     &K::f16_to_f32, &K::dot_f16_f32, nullptr, {}, 0, G::Native},
    {DType::BF16, "BF16", 1, 2, false, block_row<1, 2>, no_offset, A::None, FINESERVE_NO_DOTS, decode::bf16,
     &K::bf16_to_f32, &K::dot_bf16_f32, nullptr, {}, 0, G::Native},
    {DType::Q8_0, "Q8_0", 32, 34, false, block_row<32, 34>, no_offset, A::Q8Blocks, FINESERVE_DOTS(q8_0),
     decode::q8_0, nullptr, nullptr, encode::q8_0, {0, 0}, 1, G::WidenF16},  // f16 d; int8 qs[32]
    {DType::Q4_0, "Q4_0", 32, 18, false, block_row<32, 18>, no_offset, A::Q8BlocksQ4, FINESERVE_DOTS(q4_0),
     decode::q4_0, nullptr, nullptr, encode::q4_0, {0, 0}, 1, G::WidenF16},  // f16 d; uint8 qs[16]
    {DType::Q4_K, "Q4_K", 256, 144, false, block_row<256, 144>, no_offset, A::None, FINESERVE_NO_DOTS,
     decode::q4_k, nullptr, nullptr, encode::q4_k, {0, 2}, 2, G::WidenF16},  // f16 d, f16 dmin first
    {DType::Q6_K, "Q6_K", 256, 210, false, block_row<256, 210>, no_offset, A::None, FINESERVE_NO_DOTS,
     decode::q6_k, nullptr, nullptr, encode::q6_k, {208, 0}, 1, G::WidenF16},  // f16 d last
    // fineserve's formats are made in memory from scanned weights: nothing to scan.
    {DType::W8A8, "W8A8", 1, 0, false, byte_row, byte_offset, A::I8PerToken, FINESERVE_DOTS(w8a8), decode::w8a8,
     nullptr, nullptr, encode::w8a8, {}, 0, G::Native},
    {DType::FP8, "FP8", 1, 0, false, byte_row, byte_offset, A::E4M3PerToken, FINESERVE_DOTS(fp8), decode::fp8,
     nullptr, nullptr, encode::fp8, {}, 0, G::Native},
    {DType::W4A16, "W4A16", 1, 0, true, nibble_row<w4a16_offset>, w4a16_offset, A::F32, FINESERVE_DOTS(w4a16),
     decode::w4a16, nullptr, nullptr, encode::w4a16, {}, 0, G::Native},
    {DType::W4A8, "W4A8", 1, 0, true, nibble_row<w4a8_offset>, w4a8_offset, A::E4M3PerToken, FINESERVE_DOTS(w4a8),
     decode::w4a8, nullptr, nullptr, encode::w4a8, {}, 0, G::Native},
};

#undef FINESERVE_NO_DOTS
#undef FINESERVE_DOTS
#undef FINESERVE_AVX2

}  // namespace

const WeightTypeTraits* weight_types_begin() { return std::begin(kWeightTypes); }
const WeightTypeTraits* weight_types_end() { return std::end(kWeightTypes); }

const WeightTypeTraits& traits(DType t) {
  const auto i = static_cast<size_t>(t);
  if (i >= std::size(kWeightTypes)) throw std::invalid_argument("quant::traits: unknown weight type");
  return kWeightTypes[i];
}

std::string check_weight_traits() {
  std::string out;
  auto fail = [&](const WeightTypeTraits& r, const char* why) {
    out += (out.empty() ? "" : "; ") + std::string(r.name != nullptr ? r.name : "?") + ": " + why;
  };
  for (size_t i = 0; i < std::size(kWeightTypes); ++i) {
    const WeightTypeTraits& r = kWeightTypes[i];
    if (static_cast<size_t>(r.type) != i) fail(r, "row out of DType order");
    if (r.name == nullptr || r.row_bytes == nullptr || r.data_offset == nullptr || r.decode == nullptr) {
      fail(r, "no name, row bytes, data offset or decoder");
    }
    if (r.block_size == 0) fail(r, "block size 0");
    const bool dots = r.act != ActPrep::None;
    if (dots && r.row_dot[0] == nullptr) fail(r, "activations are prepared but there is no baseline row dot");
    if (!dots && (r.row_dot[0] || r.row_dot[1] || r.row_dot[2])) fail(r, "row dots without an activation kind");
    if ((r.widen == nullptr) != (r.fused_dot == nullptr)) fail(r, "only one of widen / fused_dot");
  }
  return out;
}

RowDot row_dot(DType t, simd::Level level) {
  static const bool checked = [] {
    const std::string why = check_weight_traits();
    if (!why.empty()) throw std::logic_error("quant::traits: " + why);
    return true;
  }();
  (void)checked;
  return simd::resolve_kernel(traits(t).row_dot, level);
}

}  // namespace fineserve::quant
