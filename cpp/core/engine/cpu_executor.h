// The CPU implementation of Executor: Llama-family forward over a host-memory KV Slab.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/executor.h"
#include "engine/kv_binding.h"
#include "engine/thread_pool.h"
#include "kv/kv_geometry.h"
#include "kv/kv_slab.h"
#include "model/loader.h"

namespace fineserve::engine {

struct CpuExecutorOptions {
  // Element format of this model's KV cache: any of kv_format.h.
  kv::KvFormat kv_format = kv::KvFormat::F32;
  // Worker threads; 0 = every CPU this process may use. Never more than that.
  uint32_t threads = 0;
  // A pool shared with other executors (then `threads` is ignored): co-located models keep to
  // the machine's cores together, and their steps run one at a time. The executor shares
  // ownership, so the pool lives as long as its last executor.
  std::shared_ptr<ThreadPool> pool;
};

// `pool` must have host memory and `kv_model` must be registered with kv_geometry_for(config,
// options.kv_format, ...). The executor keeps references to model and pool: both must outlive it.
std::unique_ptr<Executor> make_cpu_executor(const model::LoadedModel& model, kv::KvSlab& pool,
                                            kv::ModelId kv_model, const CpuExecutorOptions& options);

}  // namespace fineserve::engine
