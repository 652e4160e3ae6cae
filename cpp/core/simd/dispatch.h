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

const char* level_name(Level level);
// Accepts the names level_name() prints; returns false for anything else.
bool parse_level(std::string_view name, Level* out);

// One implementation of every vectorised CPU kernel. New kernels are added as fields here and
// implemented once per kernels_*.cc file.
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
};

// Levels compiled into this binary, ascending.
std::vector<Level> compiled_levels();
// Levels compiled in that this CPU and OS can run, ascending; Baseline is always first.
std::vector<Level> supported_levels();
// Kernel table of a level, or nullptr when it was not compiled in or cannot run here.
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
