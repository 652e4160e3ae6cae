#include "engine/cuda_executor.h"

#include <mutex>
#include <stdexcept>
#include <string>

#include "common/device.h"
#include "engine/cuda_forward.h"
#include "engine/kv_binding.h"
#include "engine/step_plan.h"
#include "kv/kv_arena.h"

namespace fineserve::gpu {

namespace {

// The device a pool's memory names ("cuda:3" -> 3); the SIMT build's "device" is host memory.
int pool_device(const kv::KvSlab& pool) {
  const std::string where = pool.memory();
  if (simulated()) {
    if (where != "host" || pool.base() == nullptr) {
      throw std::invalid_argument("memory = \"" + where + "\": the CUDA executor under the SIMT emulator needs a KV slab in host memory");
    }
    return 0;
  }
  int device = 0;
  if (!kv::cuda_device_of(where, &device) || pool.base() == nullptr) {
    throw std::invalid_argument("memory = \"" + where + "\": the CUDA executor needs a KV slab in device memory (memory = \"cuda:N\")");
  }
  return device;
}

// A stream owned for the executor's lifetime.
struct OwnedStream {
  Stream s = stream_create();
  ~OwnedStream() { stream_destroy(s); }
};

class CudaExecutor final : public engine::Executor {
 public:
  CudaExecutor(const model::LoadedModel& model, kv::KvSlab& pool, kv::ModelId kv_model, const CudaExecutorOptions& o)
      : model_(model),
        pool_(pool),
        kv_model_(kv_model),
        layout_(checked_layout(model, pool, kv_model, o)),
        device_(selected(pool_device(pool))),
        forward_(model.config, DeviceWeights(model, stream_.s), layout_, pool.base(), stream_.s) {}

  uint32_t vocab_size() const override { return model_.config.vocab_size; }
  uint32_t max_context() const override { return model_.config.max_context; }

  engine::StepPlan plan(const std::vector<engine::SequenceChunk>& batch) const override {
    return engine::plan_step(batch, vocab_size(), max_context(), pool_, kv_model_);
  }

  engine::StepOutput run(const engine::StepPlan& plan, const std::vector<engine::SequenceChunk>& batch,
                         bool return_logits) override {
    std::lock_guard<std::mutex> one_step_at_a_time(mutex_);
    set_device(device_);  // the device is per host thread, and steps may come from any thread
    bool greedy = !return_logits;
    for (const engine::SequenceChunk& ch : batch) greedy = greedy && (!ch.sample || engine::is_plain_greedy(*ch.sampling));
    forward_.run(plan, greedy ? CudaForward::Sampling::DeviceGreedy : CudaForward::Sampling::HostLogits, out_);
    if (!greedy) return engine::sample_step(batch, out_.logits, vocab_size(), return_logits);
    engine::StepOutput result;
    result.samples.resize(batch.size());
    size_t next = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].sample) continue;
      const int32_t token = out_.tokens[next];
      if (token < 0) throw std::invalid_argument("logits are all -inf or NaN: no token can be sampled");
      result.samples[i].token = token;
      result.samples[i].logprob = out_.logprobs[next];
      engine::record_sample(*batch[i].sampler_state, token);
      ++next;
    }
    return result;
  }

 private:
  static kv::KvLayout checked_layout(const model::LoadedModel& model, const kv::KvSlab& pool, kv::ModelId kv_model,
                                     const CudaExecutorOptions& o) {
    const kv::KvLayout& layout = pool.layout(kv_model);
    engine::check_kv_geometry(model.config, o.kv_format, layout);
    return layout;
  }
  static int selected(int device) {
    set_device(device);
    return device;
  }

  const model::LoadedModel& model_;
  kv::KvSlab& pool_;
  kv::ModelId kv_model_;
  const kv::KvLayout layout_;  // a copy: the pool's own may move as other models register
  int device_;
  OwnedStream stream_;         // before forward_, which enqueues its uploads on it
  CudaForward forward_;
  std::mutex mutex_;
  CudaForward::Output out_;
};

}  // namespace

std::unique_ptr<engine::Executor> make_cuda_executor(const model::LoadedModel& model, kv::KvSlab& pool,
                                                     kv::ModelId kv_model, const CudaExecutorOptions& options) {
  return std::make_unique<CudaExecutor>(model, pool, kv_model, options);
}

}  // namespace fineserve::gpu
