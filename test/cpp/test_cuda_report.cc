#include <doctest/doctest.h>

#include "cuda_devices.h"

TEST_CASE("query_cuda says whether CUDA is compiled in and explains an empty device list") {
  fineserve::CudaReport report = fineserve::query_cuda();
#if defined(FINESERVE_WITH_CUDA)
  CHECK(report.compiled);
  CHECK(report.runtime_version >= 11000);  // the runtime it was linked with: CUDA 11.8 in CI, 13 here
#else
  CHECK_FALSE(report.compiled);
  CHECK(report.runtime_version == 0);
#endif
  CHECK(report.available == !report.devices.empty());
  if (report.devices.empty()) {
    CHECK(!report.reason.empty());
    MESSAGE("no CUDA devices: " << report.reason);
  }
  for (const auto& d : report.devices) {
    CHECK(!d.name.empty());
    CHECK(d.total_memory_bytes > 0);
    CHECK(d.sm_count > 0);
    CHECK(d.cc_major >= 5);
    MESSAGE("cuda:" << d.index << " " << d.name << " sm_" << d.cc_major << d.cc_minor);
  }
  // A second call must give the same answer: the runtime's error state may not leak across calls.
  fineserve::CudaReport again = fineserve::query_cuda();
  CHECK(again.devices.size() == report.devices.size());
  CHECK(again.reason == report.reason);
}
