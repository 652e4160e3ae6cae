// Executor: one model's batch executor over a KV pool. step() runs on a worker thread and
// resolves with the sampled tokens; sequences (their sampling parameters and sampler state) are
// registered once and then referred to by id.
#include <cstring>
#include <map>
#include <stdexcept>

#include "addon.h"
#include "args.h"
#include "engine/cpu_executor.h"
#include "engine/step_plan.h"
#if defined(FINESERVE_WITH_CUDA)
#include "engine/cuda_executor.h"
#endif
#include "kv/kv_arena.h"
#include "kv/kv_slab.h"
#include "model/model_error.h"
#include "wraps.h"

namespace fineserve::addon {
namespace {

struct Sequence {
  engine::SamplingParams params;
  engine::SamplerState state;
};

class ExecutorWrap;

// One step, copied out of the JS arrays so the worker never touches JS memory.
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, ExecutorWrap* owner, bool return_logits)
      : Napi::AsyncWorker(env, "fineserve:step"), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner),
        return_logits_(return_logits) {}

  Napi::Promise promise() { return deferred_.Promise(); }
  // A step refused before it was queued.
  void reject_now(Napi::Value error) { deferred_.Reject(error); }
  // The executor object must outlive the step even if JS drops it meanwhile.
  void hold(const Napi::Object& self) { self_ = Napi::Persistent(self); }

  std::vector<uint32_t> seq_ids, n_tokens, positions, n_blocks;
  std::vector<int32_t> tokens;
  std::vector<kv::BlockId> blocks;
  std::vector<uint8_t> sample;
  // Built and planned on the JS thread (the slab's bookkeeping lives there), run on the worker.
  std::vector<engine::SequenceChunk> batch;
  engine::StepPlan plan;

  // Points the chunks into the arrays above; false (with the error set) when they disagree.
  bool build_batch();
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& err) override;

 private:
  Napi::Promise::Deferred deferred_;
  ExecutorWrap* owner_;
  bool return_logits_;
  engine::StepOutput out_;
  std::string code_;
  Napi::ObjectReference self_;
};

class ExecutorWrap : public Napi::ObjectWrap<ExecutorWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Executor",
                       {InstanceMethod<&ExecutorWrap::add_sequence>("addSequence"),
                        InstanceMethod<&ExecutorWrap::remove_sequence>("removeSequence"),
                        InstanceMethod<&ExecutorWrap::step>("step")});
  }

  // new Executor(model, kvPool, kvModelId, { kvFormat, threads, pool? }): pool, a ThreadPool,
  // replaces threads.
  explicit ExecutorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ExecutorWrap>(info) {
    Napi::Env env = info.Env();
    model_ = unwrap_model(info[0], "model");
    kv::KvPool* pool = unwrap_kv_pool(info[1], "kvPool");
    auto* slab = dynamic_cast<kv::KvSlab*>(pool);
    if (slab == nullptr) throw_coded(env, "ERR_KV_INVALID_ARGUMENT", "the executor needs a kv-slab pool (policy \"kv-slab\")");
    model_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
    pool_ref_ = Napi::Persistent(info[1].As<Napi::Object>());
    Napi::Object o = info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
    engine::CpuExecutorOptions options;
    std::string format = o.Get("kvFormat").IsString() ? o.Get("kvFormat").As<Napi::String>().Utf8Value() : "f32";
    if (!kv::parse_format(format, &options.kv_format)) {
      throw_coded(env, "ERR_KV_INVALID_GEOMETRY", "kvFormat = \"" + format + "\" is not a KV format");
    }
    options.threads = static_cast<uint32_t>(optional_number(o, "threads", 0));
    Napi::Value shared = o.Get("pool");
    if (!shared.IsUndefined() && !shared.IsNull()) {
      options.pool = unwrap_thread_pool(shared, "pool");
      thread_pool_ref_ = Napi::Persistent(shared.As<Napi::Object>());
    }
    const uint32_t kv_model = info[2].As<Napi::Number>().Uint32Value();
    // The slab's memory picks the backend: a KV cache in device memory is served by the CUDA
    // executor on that device, one in host memory by the CPU executor.
    int gpu_index = 0;
    const bool on_gpu = kv::cuda_device_of(slab->memory(), &gpu_index);
    try {
      if (!on_gpu) {
        executor_ = engine::make_cpu_executor(*model_, *slab, kv_model, options);
      } else {
#if defined(FINESERVE_WITH_CUDA)
        executor_ = gpu::make_cuda_executor(*model_, *slab, kv_model, {options.kv_format});
#else
        throw_coded(env, "ERR_EXECUTOR_INVALID", "memory = \"" + slab->memory() + "\": this addon was built without CUDA");
#endif
      }
    } catch (const kv::KvError& e) {
      throw_coded(env, kv::errc_code(e.code()), e.what());
    } catch (const std::invalid_argument& e) {
      throw_coded(env, "ERR_EXECUTOR_INVALID", e.what());
    } catch (const std::runtime_error& e) {
      // gpu::GpuError: the device refused the weights (out of memory, a driver error).
      throw_coded(env, "ERR_EXECUTOR_DEVICE", e.what());
    }
  }

  engine::Executor& executor() { return *executor_; }
  std::map<uint32_t, Sequence>& sequences() { return sequences_; }
  void finish_step() { busy_ = false; }

 private:
  void require_idle(Napi::Env env, const char* what) {
    if (busy_) throw_coded(env, "ERR_EXECUTOR_BUSY", std::string(what) + " while a step is running");
  }

  // addSequence(id, promptTokens: Int32Array, sampling: {...})
  void add_sequence(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    require_idle(env, "addSequence");
    uint32_t id = info[0].As<Napi::Number>().Uint32Value();
    std::vector<int32_t> prompt = typed_array<int32_t>(info[1], "promptTokens");
    Napi::Object p = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
    Sequence s;
    s.params.temperature = static_cast<float>(optional_number(p, "temperature", 0));
    s.params.top_k = static_cast<uint32_t>(optional_number(p, "topK", 0));
    s.params.top_p = static_cast<float>(optional_number(p, "topP", 1));
    s.params.min_p = static_cast<float>(optional_number(p, "minP", 0));
    s.params.repetition_penalty = static_cast<float>(optional_number(p, "repetitionPenalty", 1));
    s.params.presence_penalty = static_cast<float>(optional_number(p, "presencePenalty", 0));
    s.params.frequency_penalty = static_cast<float>(optional_number(p, "frequencyPenalty", 0));
    s.params.seed = static_cast<uint64_t>(optional_number(p, "seed", 0));
    s.params.logprobs = static_cast<uint32_t>(optional_number(p, "logprobs", 0));
    std::string err = engine::validate(s.params);
    if (!err.empty()) throw_coded(env, "ERR_SAMPLING_INVALID", err);
    s.state.reset(executor_->vocab_size(), prompt.data(), static_cast<uint32_t>(prompt.size()));
    sequences_[id] = std::move(s);
  }

  void remove_sequence(const Napi::CallbackInfo& info) {
    require_idle(info.Env(), "removeSequence");
    sequences_.erase(info[0].As<Napi::Number>().Uint32Value());
  }

  // step(seqIds, tokens, nTokens, positions, blocks, nBlocks, sample, returnLogits)
  Napi::Value step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    require_idle(env, "step");
    auto* w = new StepWorker(env, this, info[7].ToBoolean().Value());
    w->seq_ids = typed_array<uint32_t>(info[0], "seqIds");
    w->tokens = typed_array<int32_t>(info[1], "tokens");
    w->n_tokens = typed_array<uint32_t>(info[2], "nTokens");
    w->positions = typed_array<uint32_t>(info[3], "positions");
    w->blocks = typed_array<kv::BlockId>(info[4], "blocks");
    w->n_blocks = typed_array<uint32_t>(info[5], "nBlocks");
    w->sample = typed_array<uint8_t>(info[6], "sample");
    const size_t n = w->seq_ids.size();
    if (w->n_tokens.size() != n || w->positions.size() != n || w->n_blocks.size() != n || w->sample.size() != n) {
      delete w;
      throw_coded(env, "ERR_EXECUTOR_INVALID", "step arrays disagree on the number of sequences");
    }
    for (size_t i = 0; i < n; ++i) {
      if (w->sample[i] && sequences_.count(w->seq_ids[i]) == 0) {
        uint32_t missing = w->seq_ids[i];
        delete w;
        throw_coded(env, "ERR_EXECUTOR_INVALID", "sequence " + std::to_string(missing) + " was not added");
      }
    }
    Napi::Promise promise = w->promise();
    // Validation and block ids against the slab happen here, between the scheduler's allocations
    // and frees, never on the worker while they run; a refusal rejects the promise, as a failed
    // step does.
    if (!w->build_batch()) return reject(env, w, "ERR_EXECUTOR_INVALID", "step arrays are shorter than nTokens / nBlocks say");
    try {
      w->plan = executor_->plan(w->batch);
    } catch (const kv::KvError& e) {
      return reject(env, w, kv::errc_code(e.code()), e.what());
    } catch (const std::exception& e) {
      return reject(env, w, "ERR_EXECUTOR_INVALID", e.what());
    }
    w->hold(Value());
    busy_ = true;
    w->Queue();
    return promise;
  }

  static Napi::Value reject(Napi::Env env, StepWorker* w, const std::string& code, const std::string& message) {
    Napi::Promise promise = w->promise();
    Napi::Error e = Napi::Error::New(env, message);
    e.Set("code", Napi::String::New(env, code));
    w->reject_now(e.Value());
    delete w;
    return promise;
  }

  std::shared_ptr<model::LoadedModel> model_;
  // Keep the model, KV pool and thread pool alive while we are.
  Napi::ObjectReference model_ref_, pool_ref_, thread_pool_ref_;
  std::unique_ptr<engine::Executor> executor_;
  std::map<uint32_t, Sequence> sequences_;
  bool busy_ = false;
};

bool StepWorker::build_batch() {
  batch.resize(seq_ids.size());
  size_t token_at = 0, block_at = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    engine::SequenceChunk& c = batch[i];
    if (token_at + n_tokens[i] > tokens.size() || block_at + n_blocks[i] > blocks.size()) return false;
    c.tokens = tokens.data() + token_at;
    c.n_tokens = n_tokens[i];
    c.position = positions[i];
    c.block_table = blocks.data() + block_at;
    c.n_blocks = n_blocks[i];
    c.sample = sample[i] != 0;
    if (c.sample) {
      Sequence& s = owner_->sequences().at(seq_ids[i]);
      c.sampling = &s.params;
      c.sampler_state = &s.state;
    }
    token_at += n_tokens[i];
    block_at += n_blocks[i];
  }
  return true;
}

void StepWorker::Execute() {
  try {
    out_ = owner_->executor().run(plan, batch, return_logits_);
  } catch (const kv::KvError& e) {
    code_ = kv::errc_code(e.code());
    SetError(e.what());
  } catch (const std::exception& e) {
    code_ = "ERR_EXECUTOR_INVALID";
    SetError(e.what());
  }
}

void StepWorker::OnOK() {
  owner_->finish_step();
  Napi::Env env = Env();
  size_t n = out_.samples.size();
  Napi::Int32Array tokens_out = Napi::Int32Array::New(env, n);
  Napi::Float32Array logprobs = Napi::Float32Array::New(env, n);
  size_t k = 0;
  for (const auto& s : out_.samples) k = std::max(k, s.top.size());
  Napi::Int32Array top_tokens = Napi::Int32Array::New(env, n * k);
  Napi::Float32Array top_logprobs = Napi::Float32Array::New(env, n * k);
  for (size_t i = 0; i < n; ++i) {
    tokens_out[i] = out_.samples[i].token;
    logprobs[i] = out_.samples[i].logprob;
    for (size_t j = 0; j < k; ++j) {
      bool has = j < out_.samples[i].top.size();
      top_tokens[i * k + j] = has ? out_.samples[i].top[j].token : -1;
      top_logprobs[i * k + j] = has ? out_.samples[i].top[j].logprob : 0.0f;
    }
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("tokens", tokens_out);
  o.Set("logprobs", logprobs);
  o.Set("topK", static_cast<double>(k));
  o.Set("topTokens", top_tokens);
  o.Set("topLogprobs", top_logprobs);
  if (return_logits_) {
    Napi::Float32Array logits = Napi::Float32Array::New(env, out_.logits.size());
    if (!out_.logits.empty()) std::memcpy(logits.Data(), out_.logits.data(), out_.logits.size() * sizeof(float));
    o.Set("logits", logits);
  }
  deferred_.Resolve(o);
}

void StepWorker::OnError(const Napi::Error& err) {
  owner_->finish_step();
  Napi::Error e = err;
  e.Set("code", Napi::String::New(Env(), code_));
  deferred_.Reject(e.Value());
}

// kvGeometryFor(model, kvFormat, tokensPerBlock) -> { tokensPerBlock, layers, kvHeads, headDim,
// format, scaleBytes }: the geometry to register with the KV pool before creating an Executor.
Napi::Value kv_geometry_for(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<model::LoadedModel> model = unwrap_model(info[0], "model");
  if (!info[1].IsString()) throw Napi::TypeError::New(env, "kvFormat must be a string");
  std::string name = info[1].As<Napi::String>().Utf8Value();
  kv::KvFormat format;
  if (!kv::parse_format(name, &format)) {
    throw_coded(env, "ERR_KV_INVALID_GEOMETRY", "kvFormat = \"" + name + "\" is not a KV format");
  }
  if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "tokensPerBlock must be a number");
  kv::KvGeometry g = engine::kv_geometry_for(model->config, format, info[2].As<Napi::Number>().Uint32Value());
  std::string err = kv::validate(g);
  if (!err.empty()) throw_coded(env, "ERR_KV_INVALID_GEOMETRY", err);
  return geometry_js(env, g);
}

}  // namespace

void register_executor(Napi::Env env, Napi::Object exports) {
  exports.Set("Executor", ExecutorWrap::define(env));
  exports.Set("kvGeometryFor", Napi::Function::New(env, kv_geometry_for, "kvGeometryFor"));
}

}  // namespace fineserve::addon
