#include "simd/dispatch.h"

#include <cstdlib>
#include <stdexcept>
#include <type_traits>

#include "simd/variants.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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

// The tables the kernels_*.cc files define, indexed by Level; null where not compiled in.
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

std::string missing_kernels(const Kernels& k) {
  std::string out;
  for_each_kernel([&](auto field, const char* name) {
    if (k.*field == nullptr) out += (out.empty() ? "" : ", ") + std::string(name);
  });
  return out;
}

// Every field of `level`'s table by resolve_kernel's rule over the compiled tables.
static Kernels resolved_table(Level level) {
  const std::string missing = missing_kernels(kBaselineKernels);
  if (!missing.empty()) throw std::logic_error("simd: the baseline kernel table lacks " + missing);
  Kernels k = kBaselineKernels;
  k.level = level;
  for_each_kernel([&](auto field, const char*) {
    std::remove_reference_t<decltype(k.*field)> by_level[kLevelCount] = {};
    for (int l = 0; l < kLevelCount; ++l) {
      const Kernels* t = compiled_table(static_cast<Level>(l));
      by_level[l] = t != nullptr ? t->*field : nullptr;
    }
    k.*field = resolve_kernel(by_level, level);
  });
  return k;
}

#if defined(__x86_64__) || defined(__i386__)
// F16C straight from CPUID leaf 1: clang before 15 does not know "f16c" in __builtin_cpu_supports
// (the fuzz targets are built with clang). The AVX state it needs is checked with "avx2" below.
static bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
#endif

// __builtin_cpu_supports reads CPUID and, in libgcc, also checks XCR0 so that a kernel which hides
// AVX state from us (a VM, a container with AVX-512 disabled) is not treated as supporting it.
static bool host_runs(Level level) {
  switch (level) {
    case Level::Baseline: return true;
#if defined(__x86_64__) || defined(__i386__)
    case Level::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
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
  static const Kernels tables[kLevelCount] = {resolved_table(Level::Baseline), resolved_table(Level::Avx2),
                                              resolved_table(Level::Avx512)};
  return host_runs(level) && compiled_table(level) != nullptr ? &tables[static_cast<int>(level)] : nullptr;
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
