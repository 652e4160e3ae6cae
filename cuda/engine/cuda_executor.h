// The CUDA implementation of engine::Executor: the model's weights on the device, its KV cache in
// a slab made in device memory (KvSlab with memory "cuda:N", one cudaMalloc), and its own CUDA
// stream, so executors of co-located models stepped from different threads run concurrently on
// one GPU (spatial sharing in one process). In the SIMT build (no GPU) the slab is in host memory
// and the kernels run on the CPU, which is how CI checks this backend.
#pragma once

#include <memory>

#include "engine/executor.h"
#include "kv/kv_format.h"
#include "kv/kv_slab.h"
#include "model/loader.h"

namespace fineserve::gpu {

struct CudaExecutorOptions {
  kv::KvFormat kv_format = kv::KvFormat::F16;
};

// `kv_model` must be registered with engine::kv_geometry_for(config, options.kv_format, ...), and
// the pool's memory must be "cuda:N" ("host" in the SIMT build). The executor keeps references to
// model and pool: both must outlive it. Throws std::invalid_argument for a mismatched pool and
// GpuError when the device refuses the weights.
std::unique_ptr<engine::Executor> make_cuda_executor(const model::LoadedModel& model, kv::KvSlab& pool,
                                                     kv::ModelId kv_model, const CudaExecutorOptions& options);

}  // namespace fineserve::gpu
