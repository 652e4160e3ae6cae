#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <thread>

#include "cpu_info.h"

TEST_CASE("query_cpu describes a usable CPU") {
  fineserve::CpuInfo cpu = fineserve::query_cpu();
  CHECK(!cpu.model.empty());
  CHECK(cpu.logical_cores >= 1);
  unsigned hw = std::thread::hardware_concurrency();
  if (hw > 0) CHECK(cpu.logical_cores <= static_cast<int>(hw));
  CHECK(cpu.physical_cores >= 0);
  CHECK(cpu.physical_cores <= cpu.logical_cores);
  CHECK(cpu.memory_bytes > (64ull << 20));
  REQUIRE(!cpu.simd_supported.empty());
  CHECK(std::find(cpu.simd_supported.begin(), cpu.simd_supported.end(), cpu.simd_active) !=
        cpu.simd_supported.end());
  MESSAGE(cpu.model << ", " << cpu.logical_cores << " usable CPUs, SIMD "
                    << std::string(fineserve::simd::level_name(cpu.simd_active)));
}

TEST_CASE("usable_cores agrees with query_cpu") {
  CHECK(fineserve::usable_cores() == fineserve::query_cpu().logical_cores);
}
