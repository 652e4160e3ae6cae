#include "engine/make_executor.h"
#include "kv/kv_arena.h"

namespace fineserve::engine {

BackendChoice choose_backend(const std::string& memory, bool cuda_compiled) {
  int device = 0;
  if (!kv::cuda_device_of(memory, &device)) return {Backend::Cpu, -1};
  if (!cuda_compiled) {
    throw ExecutorError(ExecutorErrc::BackendUnavailable, "memory = \"" + memory + "\": this addon was built without CUDA");
  }
  return {Backend::Cuda, device};
}

}  // namespace fineserve::engine
