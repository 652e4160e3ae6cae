// Executor: one model's batch executor over a KV pool. step() runs on a worker thread and
// resolves with the sampled tokens; sequences (their sampling parameters and sampler state) are
// registered once and then referred to by id. The bookkeeping (engine/sequence_table.h) and the
// backend choice (engine/make_executor.h) live in cpp/core; this file translates.
#include <cstring>
#include <stdexcept>

#include "addon.h"
#include "args.h"
#include "engine/make_executor.h"
#include "engine/sequence_table.h"
#include "engine/step_plan.h"
#include "kv/kv_slab.h"
#include "model/model_error.h"
#include "wraps.h"

namespace fineserve::addon {
namespace {

class ExecutorWrap;

// One step, copied out of the JS arrays so the worker never touches JS memory.
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, ExecutorWrap* owner, engine::Executor* executor, bool return_logits)
      : Napi::AsyncWorker(env, "fineserve:step"),
        deferred_(Napi::Promise::Deferred::New(env)),
        owner_(owner),
        executor_(executor),
        data_(&addon_data(env)),
        return_logits_(return_logits) {}

  Napi::Promise promise() { return deferred_.Promise(); }
  // A step refused before it was queued.
  void reject_now(Napi::Value error) { deferred_.Reject(error); }
  // The executor object must outlive the step even if JS drops (or disposes) it meanwhile.
  void hold(const Napi::Object& self) { self_ = Napi::Persistent(self); }

  engine::StepArrays arrays;
  // Bound and planned on the JS thread (the slab's bookkeeping lives there), run on the worker.
  std::vector<engine::SequenceChunk> batch;
  engine::StepPlan plan;

  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& err) override;

 private:
  Napi::Promise::Deferred deferred_;
  ExecutorWrap* owner_;
  engine::Executor* executor_;
  AddonData* data_;
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
                        InstanceMethod<&ExecutorWrap::step>("step"),
                        InstanceMethod<&ExecutorWrap::dispose>("dispose")});
  }

  // new Executor(model, kvPool, kvModel, { kvFormat, threads, pool? }): pool, a ThreadPool,
  // replaces threads. The executor shares ownership of the model, the KV pool and the thread pool,
  // so disposing (or dropping) their JS objects leaves it working; its own dispose() lets go.
  explicit ExecutorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ExecutorWrap>(info) {
    Napi::Env env = info.Env();
    model_ = unwrap_model(info[0], "model");
    slab_ = std::dynamic_pointer_cast<kv::KvSlab>(unwrap_kv_pool(info[1], "kvPool"));
    if (!slab_) throw_coded(env, "ERR_KV_INVALID_ARGUMENT", "the executor needs a kv-slab pool (policy \"kv-slab\")");
    Napi::Object o = info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
    engine::CpuExecutorOptions options;
    std::string format = o.Get("kvFormat").IsString() ? o.Get("kvFormat").As<Napi::String>().Utf8Value() : "f32";
    if (!kv::parse_format(format, &options.kv_format)) {
      throw_coded(env, "ERR_KV_INVALID_GEOMETRY", "kvFormat = \"" + format + "\" is not a KV format");
    }
    options.threads = static_cast<uint32_t>(optional_number(o, "threads", 0));
    Napi::Value shared = o.Get("pool");
    if (!shared.IsUndefined() && !shared.IsNull()) options.pool = unwrap_thread_pool(shared, "pool");
    const uint32_t kv_model = info[2].As<Napi::Number>().Uint32Value();
    try {
      executor_ = engine::make_executor(*model_, *slab_, kv_model, options);
    } catch (const kv::KvError& e) {
      throw_coded(env, kv::errc_code(e.code()), e.what());
    } catch (const engine::ExecutorError& e) {
      throw_coded(env, engine::errc_code(e.code()), e.what());
    } catch (const std::logic_error& e) {  // std::invalid_argument: a pool or model the backend refuses
      throw_coded(env, "ERR_EXECUTOR_INVALID", e.what());
    } catch (const std::runtime_error& e) {
      // gpu::GpuError: the device refused the weights (out of memory, a driver error).
      throw_coded(env, "ERR_EXECUTOR_DEVICE", e.what());
    }
  }

  // Called on the JS thread when a step settles: a dispose() that came during it takes effect now.
  void finish_step() {
    busy_ = false;
    if (disposed_) release();
  }

 private:
  void require_usable(Napi::Env env, const char* what) {
    if (disposed_) throw_coded(env, "ERR_EXECUTOR_DISPOSED", std::string("Executor.") + what + "(): the Executor was disposed");
    if (busy_) throw_coded(env, "ERR_EXECUTOR_BUSY", std::string(what) + " while a step is running");
  }

  // addSequence(id, promptTokens: Int32Array, sampling: {...}, outputTokens?: Int32Array)
  void add_sequence(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    require_usable(env, "addSequence");
    uint32_t id = info[0].As<Napi::Number>().Uint32Value();
    std::vector<int32_t> prompt = typed_array<int32_t>(info[1], "promptTokens");
    Napi::Object p = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
    engine::SamplingParams params;
    params.temperature = static_cast<float>(optional_number(p, "temperature", 0));
    params.top_k = static_cast<uint32_t>(optional_number(p, "topK", 0));
    params.top_p = static_cast<float>(optional_number(p, "topP", 1));
    params.min_p = static_cast<float>(optional_number(p, "minP", 0));
    params.repetition_penalty = static_cast<float>(optional_number(p, "repetitionPenalty", 1));
    params.presence_penalty = static_cast<float>(optional_number(p, "presencePenalty", 0));
    params.frequency_penalty = static_cast<float>(optional_number(p, "frequencyPenalty", 0));
    params.seed = static_cast<uint64_t>(optional_number(p, "seed", 0));
    params.logprobs = static_cast<uint32_t>(optional_number(p, "logprobs", 0));
    std::vector<int32_t> output;
    if (info.Length() > 3 && !info[3].IsUndefined()) output = typed_array<int32_t>(info[3], "outputTokens");
    try {
      sequences_.add(id, params, prompt.data(), static_cast<uint32_t>(prompt.size()), executor_->vocab_size(), output.data(),
                     static_cast<uint32_t>(output.size()));
    } catch (const engine::ExecutorError& e) {
      throw_coded(env, engine::errc_code(e.code()), e.what());
    }
  }

  void remove_sequence(const Napi::CallbackInfo& info) {
    require_usable(info.Env(), "removeSequence");
    sequences_.remove(info[0].As<Napi::Number>().Uint32Value());
  }

  // step(seqIds, tokens, nTokens, positions, blocks, nBlocks, sample, returnLogits)
  Napi::Value step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    require_usable(env, "step");
    auto* w = new StepWorker(env, this, executor_.get(), info[7].ToBoolean().Value());
    engine::StepArrays& a = w->arrays;
    try {
      a.seq_ids = typed_array<uint32_t>(info[0], "seqIds");
      a.tokens = typed_array<int32_t>(info[1], "tokens");
      a.n_tokens = typed_array<uint32_t>(info[2], "nTokens");
      a.positions = typed_array<uint32_t>(info[3], "positions");
      a.blocks = typed_array<kv::BlockId>(info[4], "blocks");
      a.n_blocks = typed_array<uint32_t>(info[5], "nBlocks");
      a.sample = typed_array<uint8_t>(info[6], "sample");
    } catch (...) {
      delete w;
      throw;
    }
    // Binding and block ids against the slab happen here, between the scheduler's allocations
    // and frees, never on the worker while they run; a refusal rejects the promise, as a failed
    // step does.
    try {
      w->batch = sequences_.bind(a);
      w->plan = executor_->plan(w->batch);
    } catch (const engine::ExecutorError& e) {
      return reject(env, w, engine::errc_code(e.code()), e.what());
    } catch (const kv::KvError& e) {
      return reject(env, w, kv::errc_code(e.code()), e.what());
    } catch (const std::exception& e) {
      return reject(env, w, "ERR_EXECUTOR_INVALID", e.what());
    }
    Napi::Promise promise = w->promise();
    w->hold(Value());
    busy_ = true;
    w->Queue();
    return promise;
  }

  // Idempotent. Lets go of the executor, its sequences, and its shares of the model, the KV pool
  // and the thread pool (each freed now unless another owner holds it); during a step, once the
  // step has settled (its promise settles as usual).
  void dispose(const Napi::CallbackInfo&) {
    disposed_ = true;
    if (!busy_) release();
  }

  void release() {
    executor_.reset();  // first: it refers to the model and the slab
    sequences_.clear();
    slab_.reset();
    model_.reset();
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
  std::shared_ptr<kv::KvSlab> slab_;
  // Holds its share of the thread pool (CpuExecutorOptions::pool).
  std::unique_ptr<engine::Executor> executor_;
  engine::SequenceTable sequences_;
  bool busy_ = false;
  bool disposed_ = false;
};

void StepWorker::Execute() {
  data_->step_started();
  try {
    out_ = executor_->run(plan, batch, return_logits_);
  } catch (const kv::KvError& e) {
    code_ = kv::errc_code(e.code());
    SetError(e.what());
  } catch (const std::exception& e) {
    code_ = "ERR_EXECUTOR_INVALID";
    SetError(e.what());
  }
  data_->step_ended();
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
