// The seam between core and the CUDA backend for device discovery. cuda/device_query.cu implements
// it when the addon is built with CUDA; cpp/core/cuda_absent.cc when it is not, so that callers
// never need #ifdefs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fineserve {

struct CudaDeviceInfo {
  int index;
  std::string name;
  uint64_t total_memory_bytes;
  int sm_count;
  int cc_major;
  int cc_minor;
  std::string pci_bus_id;
};

struct CudaReport {
  bool compiled = false;       // this binary contains the CUDA backend
  bool available = false;      // at least one usable device was found
  std::string reason;          // why there are no devices, when there are none
  int runtime_version = 0;     // e.g. 13000 for CUDA 13.0; 0 when not compiled
  int driver_version = 0;      // 0 when no driver is installed
  std::vector<CudaDeviceInfo> devices;
};

// Never throws and never aborts: a host without a driver or a GPU gives an empty report with a
// reason, because the same binary must load everywhere.
CudaReport query_cuda();

}  // namespace fineserve
