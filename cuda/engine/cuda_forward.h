// The Llama-family forward pass on the device for one step: the same sequence of operations as
// engine::LlamaForward (cpp/core/engine/llama_forward.cc), each a kernel of cuda/kernels on the
// model's own stream, with K/V read and written in the slab through the step's block tables.
#pragma once

#include <cstdint>
#include <vector>

#include "common/device.h"
#include "engine/device_weights.h"
#include "engine/step_plan.h"
#include "kv/kv_geometry.h"
#include "model/loader.h"

namespace fineserve::gpu {

class CudaForward {
 public:
  // `slab` is the device address of the KV Slab's base; `layout` this model's block layout.
  // `weights` are on the device already (uploaded from a model, or synthetic for benchmarks).
  CudaForward(const model::LlamaConfig& config, DeviceWeights weights, const kv::KvLayout& layout, uint8_t* slab,
              Stream stream);

  // What comes back to the host for each of plan.logit_rows.
  struct Output {
    std::vector<float> logits;     // HostLogits: [logit_rows][vocab]
    std::vector<int32_t> tokens;   // DeviceGreedy: the argmax (-1 for a row without a finite logit)
    std::vector<float> logprobs;   // DeviceGreedy: its log-softmax
  };
  enum class Sampling { HostLogits, DeviceGreedy };

  // Runs the plan's tokens through the model; returns when `out` holds the results.
  void run(const engine::StepPlan& plan, Sampling sampling, Output& out);

  const DeviceWeights& weights() const { return weights_; }

 private:
  void reserve(uint32_t tokens, uint32_t logit_rows, uint32_t max_context, size_t staging_bytes);

  const model::LlamaConfig config_;
  const kv::KvLayout layout_;
  uint8_t* slab_;
  Stream stream_;
  DeviceWeights weights_;
  DeviceBuffer inv_freq_;
  // Grown to the largest step seen and reused.
  DeviceBuffer staging_, x_, xn_, q_, k_, v_, attn_, gate_, up_, last_, logits_, scratch_, sampled_, attn_scratch_, k4_snapshots_;
  uint32_t capacity_tokens_ = 0, capacity_logit_rows_ = 0;
  std::vector<uint8_t> host_staging_;
};

}  // namespace fineserve::gpu
