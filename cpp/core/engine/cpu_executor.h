// The CPU implementation of Executor: Llama-family forward over a host-memory KV Slab.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/executor.h"
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

// The KV block geometry a model needs in a given KV format, with the format's scale bytes
// (kv::default_scale_bytes); register it with the slab
// (KvPool::add_model) before creating the executor.
kv::KvGeometry kv_geometry_for(const model::LlamaConfig& config, kv::KvFormat format,
                               uint32_t tokens_per_block = 16);

// `pool` must have host memory and `kv_model` must be registered with kv_geometry_for(config,
// options.kv_format, ...). The executor keeps references to model and pool: both must outlive it.
std::unique_ptr<Executor> make_cpu_executor(const model::LoadedModel& model, kv::KvSlab& pool,
                                            kv::ModelId kv_model, const CpuExecutorOptions& options);

}  // namespace fineserve::engine
