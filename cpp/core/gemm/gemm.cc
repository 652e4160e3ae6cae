#include "gemm/gemm.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace fineserve::gemm {

#if defined(FINESERVE_HAVE_AVX2)
extern const Kernels kAvx2Gemm;  // gemm_avx2.cc
#endif
#if defined(FINESERVE_HAVE_AVX512)
extern const BlockFn kAvx512Float[3];    // gemm_avx512.cc: F32, F16, BF16
extern const BlockFn kAvx512Decoded[3];  // gemm_avx512.cc: W4A16, W4A8, FP8
#endif

const Kernels* kernels_for(simd::Level level) {
  if (simd::kernels_for(level) == nullptr) return nullptr;  // not compiled in, or not this host's
  const Kernels* by_level[simd::kLevelCount] = {};
#if defined(FINESERVE_HAVE_AVX2)
  by_level[static_cast<int>(simd::Level::Avx2)] = &kAvx2Gemm;
#if defined(FINESERVE_HAVE_AVX512)
  // AVX-512 has float tiles and decoded types of its own; the block types (and the K-quants'
  // fallback, which their packed GEMM replaces) keep AVX2's.
  static const Kernels avx512 = [] {
    Kernels k = kAvx2Gemm;
    k.f32 = kAvx512Float[0];
    k.f16 = kAvx512Float[1];
    k.bf16 = kAvx512Float[2];
    k.w4a16 = kAvx512Decoded[0];
    k.w4a8 = kAvx512Decoded[1];
    k.fp8 = kAvx512Decoded[2];
    return k;
  }();
  by_level[static_cast<int>(simd::Level::Avx512)] = &avx512;
#endif
#endif
  return simd::resolve_kernel(by_level, level);
}

BlockFn block_kernel(model::DType t, simd::Level level) {
  const Kernels* k = gemm::kernels_for(level);
  if (k == nullptr) return nullptr;
  switch (t) {
    case model::DType::F32: return k->f32;
    case model::DType::F16: return k->f16;
    case model::DType::BF16: return k->bf16;
    case model::DType::Q8_0: return k->q8_0;
    case model::DType::Q4_0: return k->q4_0;
    case model::DType::Q4_K: return k->q4_k;
    case model::DType::Q6_K: return k->q6_k;
    case model::DType::W4A16: return k->w4a16;
    case model::DType::W4A8: return k->w4a8;
    case model::DType::FP8: return k->fp8;
    default: return nullptr;
  }
}

namespace {
// -1: follow FINESERVE_GEMM, read at every call (a few hundred ns beside a matrix product), so a
// benchmark in Node can switch paths between runs by setting process.env; 0 / 1: set_enabled.
std::atomic<int> forced{-1};
}  // namespace

bool enabled() {
  const int f = forced.load(std::memory_order_relaxed);
  if (f >= 0) return f == 1;
  const char* v = std::getenv("FINESERVE_GEMM");
  return v == nullptr || std::strcmp(v, "0") != 0;
}
void set_enabled(bool on) { forced.store(on ? 1 : 0, std::memory_order_relaxed); }

}  // namespace fineserve::gemm
