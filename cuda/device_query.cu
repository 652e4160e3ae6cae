// Device discovery through the CUDA runtime. The runtime is linked statically and loads
// libcuda.so.1 on first use, so on a host without a driver every call below fails cleanly
// (cudaErrorInsufficientDriver / cudaErrorNoDevice) instead of the addon failing to load.
#include <cuda_runtime.h>

#include <string>

#include "cuda_devices.h"

namespace fineserve {
namespace {

std::string describe(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

}  // namespace

CudaReport query_cuda() {
  CudaReport report;
  report.compiled = true;
  // The runtime is linked statically, so its version is the one it was built with; CUDA 11's
  // cudaRuntimeGetVersion fails without a driver, where 12+ answers.
  if (cudaRuntimeGetVersion(&report.runtime_version) != cudaSuccess || report.runtime_version == 0) {
    report.runtime_version = CUDART_VERSION;
  }
  if (cudaDriverGetVersion(&report.driver_version) != cudaSuccess) report.driver_version = 0;
  if (report.driver_version == 0) {
    report.reason = "no NVIDIA driver found (libcuda.so.1 is not loadable)";
    return report;
  }
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    report.reason = "cudaGetDeviceCount failed: " + describe(err);
    cudaGetLastError();  // clear the sticky error so later runtime calls start clean
    return report;
  }
  if (count == 0) {
    report.reason = "the NVIDIA driver reports no CUDA devices";
    return report;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    err = cudaGetDeviceProperties(&prop, i);
    if (err != cudaSuccess) {
      report.reason += "device " + std::to_string(i) + ": " + describe(err) + "; ";
      continue;
    }
    char bus[32] = {};
    cudaDeviceGetPCIBusId(bus, sizeof bus, i);
    report.devices.push_back(CudaDeviceInfo{i, prop.name, static_cast<uint64_t>(prop.totalGlobalMem),
                                            prop.multiProcessorCount, prop.major, prop.minor, bus});
  }
  report.available = !report.devices.empty();
  return report;
}

}  // namespace fineserve
