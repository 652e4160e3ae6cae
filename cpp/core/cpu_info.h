// What the host CPU is and how much of it this process may use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "simd/dispatch.h"

namespace fineserve {

struct CpuInfo {
  std::string model;       // brand string, e.g. "AMD EPYC 7B13"
  int logical_cores;       // CPUs this process may run on (affinity mask), >= 1
  int physical_cores;      // distinct (package, core) pairs among them; 0 when unknown
  uint64_t memory_bytes;   // physical memory of the host
  std::vector<simd::Level> simd_supported;
  simd::Level simd_active;
  std::string simd_note;   // why simd_active differs from the best supported level, if it does
};

CpuInfo query_cpu();

// CPUs this process may run on. Thread pools are sized from this, never from the host total,
// so a container or taskset limit is respected.
int usable_cores();

}  // namespace fineserve
