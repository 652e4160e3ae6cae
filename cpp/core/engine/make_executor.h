// The backend that serves a model: where its KV Slab's memory lives picks it. A KV cache in
// device memory ("cuda:N") is served by the CUDA executor on that device, one in host memory by
// the CPU executor.
#pragma once

#include <memory>
#include <string>

#include "engine/cpu_executor.h"
#include "engine/executor.h"
#include "engine/executor_error.h"
#include "kv/kv_slab.h"
#include "model/loader.h"

namespace fineserve::engine {

enum class Backend { Cpu, Cuda };

struct BackendChoice {
  Backend backend = Backend::Cpu;
  int device = -1;  // the CUDA device, for Backend::Cuda
};

// "cuda:N" -> the CUDA backend on device N; anything else ("host", "none") -> the CPU backend,
// whose executor refuses a slab without host memory. Throws ExecutorError(BackendUnavailable)
// naming the memory for "cuda:N" when `cuda_compiled` is false.
BackendChoice choose_backend(const std::string& memory, bool cuda_compiled);

// True when this binary has the CUDA backend (the file compiled with FINESERVE_WITH_CUDA).
bool cuda_backend_compiled();

// The executor for `slab`'s memory (choose_backend): make_cpu_executor with `options`, or the
// CUDA executor with options.kv_format. The executor keeps references to model and slab: both must
// outlive it. Throws what the backend throws (KvError, std::invalid_argument, gpu::GpuError as
// std::runtime_error) and ExecutorError(BackendUnavailable).
//
// Implemented in make_executor.cc, which is compiled with the addon (and the C++ tests) rather
// than into fineserve_core: it needs FINESERVE_WITH_CUDA and the CUDA backend's library, which
// the targets that link fineserve_backend and fineserve_gpu have.
std::unique_ptr<Executor> make_executor(const model::LoadedModel& model, kv::KvSlab& slab, kv::ModelId kv_model,
                                        const CpuExecutorOptions& options);

}  // namespace fineserve::engine
