// query_cuda() for builds made without the CUDA toolkit.
#include "cuda_devices.h"

namespace fineserve {

CudaReport query_cuda() {
  CudaReport report;
  report.reason =
      "this addon was built without CUDA (nvcc was not found or WITH_CUDA=OFF); "
      "rebuild with `npm run build:native:cuda` or install the CUDA prebuild";
  return report;
}

}  // namespace fineserve
