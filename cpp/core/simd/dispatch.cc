#include "simd/dispatch.h"

#include <cstdlib>

#include "simd/variants.h"

namespace fineserve::simd {

const char* level_name(Level level) {
  switch (level) {
    case Level::Baseline: return "baseline";
    case Level::Avx2: return "avx2";
    case Level::Avx512: return "avx512";
  }
  return "unknown";
}

bool parse_level(std::string_view name, Level* out) {
  for (Level level : {Level::Baseline, Level::Avx2, Level::Avx512}) {
    if (name == level_name(level)) {
      *out = level;
      return true;
    }
  }
  return false;
}

static const Kernels* compiled_table(Level level) {
  switch (level) {
    case Level::Baseline: return &kBaselineKernels;
#if defined(FINESERVE_HAVE_AVX2)
    case Level::Avx2: return &kAvx2Kernels;
#endif
#if defined(FINESERVE_HAVE_AVX512)
    case Level::Avx512: return &kAvx512Kernels;
#endif
    default: return nullptr;
  }
}

// __builtin_cpu_supports reads CPUID and, in libgcc, also checks XCR0 so that a kernel which hides
// AVX state from us (a VM, a container with AVX-512 disabled) is not treated as supporting it.
static bool host_runs(Level level) {
  switch (level) {
    case Level::Baseline: return true;
#if defined(__x86_64__) || defined(__i386__)
    case Level::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case Level::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    default: return false;
  }
}

std::vector<Level> compiled_levels() {
  std::vector<Level> out;
  for (Level level : {Level::Baseline, Level::Avx2, Level::Avx512}) {
    if (compiled_table(level) != nullptr) out.push_back(level);
  }
  return out;
}

std::vector<Level> supported_levels() {
  std::vector<Level> out;
  for (Level level : compiled_levels()) {
    if (host_runs(level)) out.push_back(level);
  }
  return out;
}

const Kernels* kernels_for(Level level) {
  return host_runs(level) ? compiled_table(level) : nullptr;
}

Selection select_level(const char* requested) {
  Level best = supported_levels().back();
  if (requested == nullptr || *requested == '\0') return {best, ""};
  Level want;
  if (!parse_level(requested, &want)) {
    return {best, std::string("FINESERVE_SIMD=") + requested +
                      " is not one of baseline, avx2, avx512; using " + level_name(best)};
  }
  if (want > best) {
    return {best, std::string("FINESERVE_SIMD=") + requested + " is not supported here; using " +
                      level_name(best)};
  }
  if (want == best) return {best, ""};
  return {want, std::string("lowered by FINESERVE_SIMD from ") + level_name(best)};
}

const Selection& active_selection() {
  static const Selection selection = select_level(std::getenv("FINESERVE_SIMD"));
  return selection;
}

const Kernels& active() {
  static const Kernels* table = kernels_for(active_selection().level);
  return *table;
}

}  // namespace fineserve::simd
