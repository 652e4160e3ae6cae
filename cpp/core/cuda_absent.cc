// The CUDA seam (query_cuda, make_cuda_arena) for builds made without the CUDA toolkit.
#include "cuda_devices.h"
#include "kv/kv_arena.h"
#include "kv/kv_pool.h"

namespace fineserve {

CudaReport query_cuda() {
  CudaReport report;
  report.reason =
      "this addon was built without CUDA (nvcc was not found or WITH_CUDA=OFF); "
      "rebuild with `npm run build:native:cuda` or install the CUDA prebuild";
  return report;
}

}  // namespace fineserve

namespace fineserve::kv {

std::unique_ptr<KvArena> make_cuda_arena(int device, uint64_t bytes) {
  throw KvError(KvErrc::InvalidArgument, "memory = \"cuda:" + std::to_string(device) +
                                             "\": this addon was built without CUDA");
}

}  // namespace fineserve::kv
