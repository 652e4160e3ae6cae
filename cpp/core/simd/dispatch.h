// Runtime SIMD dispatch. The prebuilt addon must run on any x86-64, so the baseline build targets
// plain x86-64 and the AVX2/AVX-512 kernels live in translation units compiled with their own
// -m flags; one table of function pointers per level is picked once, from what the host CPU and OS
// can actually execute.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fineserve::simd {

enum class Level : int { Baseline = 0, Avx2 = 1, Avx512 = 2 };
inline constexpr int kLevelCount = 3;

// The one fallback rule of every per-level kernel table (simd::Kernels below, the row dots of
// quant/weight_traits.h): a level uses its own kernel, else the next lower level's, down to
// Baseline, which every table must fill. `by_level` is indexed by Level; nullptr means "none of
// its own" (or not compiled in).
template <class Fn>
Fn resolve_kernel(const Fn (&by_level)[kLevelCount], Level level) {
  for (int l = static_cast<int>(level); l >= 0; --l) {
    if (by_level[l] != nullptr) return by_level[l];
  }
  return nullptr;
}

const char* level_name(Level level);
// Accepts the names level_name() prints; returns false for anything else.
bool parse_level(std::string_view name, Level* out);

// One implementation of every vectorised CPU kernel. New kernels are added as fields here (and to
// for_each_kernel below) and implemented in kernels_baseline.cc; a kernels_*.cc file of a wider
// level may leave a field null, and kernels_for() then fills it by resolve_kernel's rule.
struct Kernels {
  Level level;
  // Sum of a[i] * b[i] in float; the order of accumulation differs between levels.
  float (*dot_f32)(const float* a, const float* b, size_t n);
  // IEEE binary16 to binary32, exact for every input including subnormals, inf and NaN.
  void (*f16_to_f32)(const uint16_t* src, float* dst, size_t n);
  // bfloat16 to binary32 (exact: bf16 is the top half of a float).
  void (*bf16_to_f32)(const uint16_t* src, float* dst, size_t n);
  // binary32 to binary16 / bfloat16, rounding to nearest even (NaN stays NaN).
  void (*f32_to_f16)(const float* src, uint16_t* dst, size_t n);
  void (*f32_to_bf16)(const float* src, uint16_t* dst, size_t n);
  // y[i] += a * x[i]
  void (*axpy_f32)(float a, const float* x, float* y, size_t n);
  // Dot product of an f16 / bf16 row with a float row, decoding in registers: the decode-time
  // GEMV, where converting the weight row to a float buffer first would double its memory traffic.
  float (*dot_f16_f32)(const uint16_t* a, const float* b, size_t n);
  float (*dot_bf16_f32)(const uint16_t* a, const float* b, size_t n);
  // out[i] = silu(gate[i]) * up[i] (SwiGLU), exp by exp_poly.h's method; out may alias gate.
  void (*silu_mul_f32)(const float* gate, const float* up, float* out, size_t n);
};

// Calls f(&Kernels::field, "field") for every kernel field: the one list of them.
template <class F>
void for_each_kernel(F&& f) {
  f(&Kernels::dot_f32, "dot_f32");
  f(&Kernels::f16_to_f32, "f16_to_f32");
  f(&Kernels::bf16_to_f32, "bf16_to_f32");
  f(&Kernels::f32_to_f16, "f32_to_f16");
  f(&Kernels::f32_to_bf16, "f32_to_bf16");
  f(&Kernels::axpy_f32, "axpy_f32");
  f(&Kernels::dot_f16_f32, "dot_f16_f32");
  f(&Kernels::dot_bf16_f32, "dot_bf16_f32");
  f(&Kernels::silu_mul_f32, "silu_mul_f32");
}

// Names of the kernel fields `k` leaves null ("" when complete); the baseline table must be
// complete, which kernels_for() checks once (std::logic_error otherwise).
std::string missing_kernels(const Kernels& k);

// Levels compiled into this binary, ascending.
std::vector<Level> compiled_levels();
// Levels compiled in that this CPU and OS can run, ascending; Baseline is always first.
std::vector<Level> supported_levels();
// Kernel table of a level, resolved field by field by resolve_kernel's rule, or nullptr when the
// level was not compiled in or cannot run here.
const Kernels* kernels_for(Level level);

struct Selection {
  Level level;
  // Set when FINESERVE_SIMD asked for something else than what is in use, and why.
  std::string note;
};

// The highest supported level, lowered to `requested` when given (the FINESERVE_SIMD variable).
// Pure: tests call it with any request.
Selection select_level(const char* requested);

// The kernels every caller uses: select_level(getenv("FINESERVE_SIMD")), decided once per process.
const Kernels& active();
const Selection& active_selection();

}  // namespace fineserve::simd
