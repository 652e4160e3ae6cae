// Model: a loaded model file, and loadModel(), which maps and checks it on a worker thread,
// reports progress to JS and can be cancelled.
#include <cmath>

#include "addon.h"
#include "progress_job.h"
#include "wraps.h"

namespace fineserve::addon {
namespace {

Napi::Object config_js(Napi::Env env, const model::LlamaConfig& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("architecture", c.architecture);
  o.Set("vocabSize", c.vocab_size);
  o.Set("hiddenSize", c.hidden_size);
  o.Set("intermediateSize", c.intermediate_size);
  o.Set("layers", c.num_layers);
  o.Set("heads", c.num_heads);
  o.Set("kvHeads", c.num_kv_heads);
  o.Set("headDim", c.head_dim);
  o.Set("maxContext", c.max_context);
  o.Set("rmsNormEps", c.rms_norm_eps);
  o.Set("ropeTheta", c.rope_theta);
  o.Set("ropeStyle", c.rope_style == model::RopeStyle::Interleaved ? "interleaved" : "half-split");
  o.Set("ropeScaling", c.rope_scaling.type);
  o.Set("tiedEmbeddings", c.tied_embeddings);
  o.Set("qkvBias", c.qkv_bias);
  o.Set("bosTokenId", c.bos_token_id);
  o.Set("eosTokenId", c.eos_token_id);
  return o;
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod<&ModelWrap::info>("info"), InstanceMethod<&ModelWrap::metadata>("metadata")});
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}

  std::shared_ptr<model::LoadedModel> model;

 private:
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("config", config_js(env, model->config));
    o.Set("source", model->source);
    o.Set("format", model->format);
    o.Set("weightBytes", static_cast<double>(model->weight_bytes));
    Napi::Array keys = Napi::Array::New(env, model->metadata.size());
    uint32_t i = 0;
    for (const auto& kv : model->metadata) keys.Set(i++, kv.first);
    o.Set("metadataKeys", keys);
    return o;
  }

  Napi::Value metadata(const Napi::CallbackInfo& info) {
    std::string key = info[0].ToString().Utf8Value();
    auto it = model->metadata.find(key);
    if (it == model->metadata.end()) return info.Env().Undefined();
    return Napi::String::New(info.Env(), it->second);
  }
};

Napi::FunctionReference* model_constructor = nullptr;

class LoadJob : public ProgressJob {
 public:
  LoadJob(Napi::Env env, std::string path, bool check_finite, const Napi::Value& on_progress)
      : ProgressJob(env, on_progress), path_(std::move(path)), check_finite_(check_finite) {}

 private:
  void run(const std::function<bool(double)>& on_progress) override {
    model::LoadOptions options;
    options.check_finite = check_finite_;
    options.on_progress = on_progress;
    model_ = model::load_model(path_, options);
  }

  const char* code_of(const std::exception&) const override { return "ERR_MODEL_LOAD"; }

  void OnOK() override {
    // An abort that arrived after the last tensor was checked still wins: the caller asked for
    // no model, and a small file can finish loading before the JS side sees its progress events.
    if (cancelled()) {
      reject(Napi::Error::New(Env(), "loading " + path_ + " was cancelled"),
             model::errc_code(model::ModelErrc::Cancelled));
      return;
    }
    Napi::Object obj = model_constructor->New({});
    ModelWrap::Unwrap(obj)->model = std::shared_ptr<model::LoadedModel>(std::move(model_));
    deferred_.Resolve(obj);
  }

  std::string path_;
  bool check_finite_;
  std::unique_ptr<model::LoadedModel> model_;
};

// loadModel(path, checkFinite, onProgress?) -> { promise, cancel() }
Napi::Value load_model(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  auto* job = new LoadJob(env, info[0].As<Napi::String>().Utf8Value(), info[1].ToBoolean().Value(), info[2]);
  return job->start();
}

}  // namespace

std::shared_ptr<model::LoadedModel> unwrap_model(const Napi::Value& value, const char* what) {
  if (!value.IsObject() || model_constructor == nullptr ||
      !value.As<Napi::Object>().InstanceOf(model_constructor->Value())) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a native Model");
  }
  return ModelWrap::Unwrap(value.As<Napi::Object>())->model;
}

void register_model(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = ModelWrap::define(env);
  model_constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  exports.Set("Model", ctor);
  exports.Set("loadModel", Napi::Function::New(env, load_model, "loadModel"));
}

}  // namespace fineserve::addon
