#include "engine/make_executor.h"

#include <stdexcept>

#if defined(FINESERVE_WITH_CUDA)
#include "engine/cuda_executor.h"
#endif

namespace fineserve::engine {

bool cuda_backend_compiled() {
#if defined(FINESERVE_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Executor> make_executor(const model::LoadedModel& model, kv::KvSlab& slab, kv::ModelId kv_model,
                                        const CpuExecutorOptions& options) {
  BackendChoice choice = choose_backend(slab.memory(), cuda_backend_compiled());
  if (choice.backend == Backend::Cpu) return make_cpu_executor(model, slab, kv_model, options);
#if defined(FINESERVE_WITH_CUDA)
  return gpu::make_cuda_executor(model, slab, kv_model, {options.kv_format});
#else
  throw std::logic_error("choose_backend picked CUDA in a build without it");
#endif
}

}  // namespace fineserve::engine
