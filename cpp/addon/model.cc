// Model: a loaded model file, and loadModel(), which maps and checks it on a worker thread,
// reports progress to JS and can be cancelled.
#include <cctype>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "addon.h"
#include "engine/make_executor.h"
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

// Quantization specs cross as { weights: 'w4a16', group, kv: 'int4', calibration, smoothK }.
constexpr const char* kPrecisionCode = "ERR_MODEL_PRECISION";

const std::map<std::string, model::DType>& weight_formats() {
  static const std::map<std::string, model::DType> formats = {{"w8a8", model::DType::W8A8},
                                                               {"fp8", model::DType::FP8},
                                                               {"w4a16", model::DType::W4A16},
                                                               {"w4a8", model::DType::W4A8},
                                                               {"f32", model::DType::F32},
                                                               {"f16", model::DType::F16},
                                                               {"bf16", model::DType::BF16}};
  return formats;
}

std::string lower_name(model::DType t) {
  std::string s = model::dtype_name(t);
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

model::QuantizeSpec quantize_spec(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) throw_coded(env, kPrecisionCode, "quantize must be an object");
  Napi::Object o = v.As<Napi::Object>();
  model::QuantizeSpec spec;
  Napi::Value weights = o.Get("weights");
  auto it = weights.IsString() ? weight_formats().find(weights.As<Napi::String>().Utf8Value()) : weight_formats().end();
  if (it == weight_formats().end()) {
    std::string got = weights.IsString() ? "\"" + weights.As<Napi::String>().Utf8Value() + "\"" : "a non-string";
    throw_coded(env, kPrecisionCode, "quantize.weights must be one of 'w8a8', 'fp8', 'w4a16', 'w4a8', 'f32', 'f16', 'bf16', got " + got);
  }
  spec.weights = it->second;
  Napi::Value group = o.Get("group");
  if (!group.IsUndefined()) {
    double g = group.IsNumber() ? group.As<Napi::Number>().DoubleValue() : -1;
    if (!(g >= 32 && g <= 65536 && std::floor(g) == g && static_cast<uint32_t>(g) % 32 == 0)) {
      throw_coded(env, kPrecisionCode, "quantize.group must be a positive multiple of 32 (at most 65536), got " +
                                           group.ToString().Utf8Value());
    }
    spec.group = static_cast<uint32_t>(g);
  }
  Napi::Value kv = o.Get("kv");
  if (!kv.IsUndefined()) {
    if (!kv.IsString() || !kv::parse_format(kv.As<Napi::String>().Utf8Value(), &spec.kv)) {
      throw_coded(env, kPrecisionCode, "quantize.kv must be one of 'f32', 'f16', 'bf16', 'fp8', 'int8', 'int4', got " +
                                           kv.ToString().Utf8Value());
    }
  }
  Napi::Value smooth = o.Get("smoothK");
  if (!smooth.IsUndefined()) {
    if (!smooth.IsBoolean()) throw_coded(env, kPrecisionCode, "quantize.smoothK must be a boolean");
    spec.smooth_k = smooth.As<Napi::Boolean>().Value();
  }
  Napi::Value cal = o.Get("calibration");
  if (!cal.IsUndefined()) {
    if (!cal.IsArray()) throw_coded(env, kPrecisionCode, "quantize.calibration must be an array of Int32Array");
    Napi::Array seqs = cal.As<Napi::Array>();
    for (uint32_t i = 0; i < seqs.Length(); ++i) {
      Napi::Value seq = seqs.Get(i);
      if (!seq.IsTypedArray() || seq.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw_coded(env, kPrecisionCode, "quantize.calibration[" + std::to_string(i) + "] must be an Int32Array");
      }
      Napi::Int32Array a = seq.As<Napi::Int32Array>();
      spec.calibration.emplace_back(a.Data(), a.Data() + a.ElementLength());
    }
  }
  return spec;
}

Napi::Value quantized_js(Napi::Env env, const model::LoadedModel& m) {
  if (!m.quantized) return env.Null();
  const model::QuantizeSpec& q = *m.quantized;
  Napi::Object o = Napi::Object::New(env);
  o.Set("weights", lower_name(q.weights));
  if (q.weights == model::DType::W4A16 || q.weights == model::DType::W4A8) o.Set("group", q.group);
  o.Set("kv", kv::format_name(q.kv));
  o.Set("smoothK", q.smooth_k);
  o.Set("calibrationSequences", m.calibration_sequences);
  return o;
}

// { "W4A16": 14, "F32": 5, ... } over distinct tensors (a tied output counts once).
Napi::Object weight_formats_js(Napi::Env env, const model::LoadedModel& m) {
  std::map<std::string, uint32_t> counts;
  std::set<const uint8_t*> seen;
  auto add = [&](const model::TensorView& t) {
    if (t.data != nullptr && seen.insert(t.data).second) ++counts[model::dtype_name(t.dtype)];
  };
  add(m.weights.token_embedding);
  for (const model::LlamaLayerWeights& l : m.weights.layers) {
    for (const model::TensorView* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.ffn_norm,
                                       &l.w_gate, &l.w_up, &l.w_down}) {
      add(*t);
    }
  }
  add(m.weights.output_norm);
  add(m.weights.output);
  Napi::Object o = Napi::Object::New(env);
  for (const auto& [name, n] : counts) o.Set(name, n);
  return o;
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod<&ModelWrap::info>("info"), InstanceMethod<&ModelWrap::metadata>("metadata"),
                        InstanceMethod<&ModelWrap::dispose>("dispose"),
                        InstanceAccessor<&ModelWrap::native_bytes>("nativeBytes")});
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}

  // Takes ownership of a loaded model, reporting its weight bytes (owned buffers and mapped file
  // pages alike) as external memory until its last owner drops it.
  void hold(Napi::Env env, std::unique_ptr<model::LoadedModel> m) {
    bytes_ = m->weight_bytes;
    model_ = share_tracked(env, std::move(m), bytes_);
  }

  // The model, or ERR_MODEL_DISPOSED naming `used` (a wrap made by `new Model()` holds none either).
  const std::shared_ptr<model::LoadedModel>& live(Napi::Env env, const std::string& used) const {
    if (!model_) throw_coded(env, "ERR_MODEL_DISPOSED", used + ": the Model was disposed");
    return model_;
  }

 private:
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const model::LoadedModel& m = *live(env, "Model.info()");
    Napi::Object o = Napi::Object::New(env);
    o.Set("config", config_js(env, m.config));
    o.Set("source", m.source);
    o.Set("format", m.format);
    o.Set("weightBytes", static_cast<double>(m.weight_bytes));
    Napi::Array keys = Napi::Array::New(env, m.metadata.size());
    uint32_t i = 0;
    for (const auto& kv : m.metadata) keys.Set(i++, kv.first);
    o.Set("metadataKeys", keys);
    o.Set("weightFormats", weight_formats_js(env, m));
    o.Set("quantized", quantized_js(env, m));
    return o;
  }

  Napi::Value metadata(const Napi::CallbackInfo& info) {
    const model::LoadedModel& m = *live(info.Env(), "Model.metadata()");
    std::string key = info[0].ToString().Utf8Value();
    auto it = m.metadata.find(key);
    if (it == m.metadata.end()) return info.Env().Undefined();
    return Napi::String::New(info.Env(), it->second);
  }

  // Drops this wrap's share: the weights are freed now unless an executor still holds them.
  void dispose(const Napi::CallbackInfo&) { model_.reset(); }

  Napi::Value native_bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), model_ ? static_cast<double>(bytes_) : 0.0);
  }

  std::shared_ptr<model::LoadedModel> model_;
  uint64_t bytes_ = 0;
};

class LoadJob : public ProgressJob {
 public:
  LoadJob(Napi::Env env, std::string path, bool check_finite, std::optional<model::QuantizeSpec> quantize,
          const Napi::Value& on_progress)
      : ProgressJob(env, on_progress),
        path_(std::move(path)),
        check_finite_(check_finite),
        quantize_(std::move(quantize)) {}

 private:
  void run(const std::function<bool(double)>& on_progress) override {
    model::LoadOptions options;
    options.check_finite = check_finite_;
    options.repack = !engine::cuda_backend_compiled();  // the CPU serves it: one packed copy
    options.on_progress = on_progress;
    options.quantize = std::move(quantize_);
    model_ = model::load_model(path_, options);
    // Quantizing at load frees as much in temporaries as the model keeps.
    release_free_memory();
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
    Napi::Object obj = addon_data(Env()).model.New({});
    ModelWrap::Unwrap(obj)->hold(Env(), std::move(model_));
    deferred_.Resolve(obj);
  }

  std::string path_;
  bool check_finite_;
  std::optional<model::QuantizeSpec> quantize_;
  std::unique_ptr<model::LoadedModel> model_;
};

// loadModel(path, checkFinite | { checkFinite?, quantize? }, onProgress?) -> { promise, cancel() }
Napi::Value load_model(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  bool check_finite = info[1].ToBoolean().Value();
  std::optional<model::QuantizeSpec> quantize;
  if (info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    Napi::Value cf = o.Get("checkFinite");
    check_finite = cf.IsUndefined() ? true : cf.ToBoolean().Value();
    Napi::Value q = o.Get("quantize");
    if (!q.IsUndefined() && !q.IsNull()) quantize = quantize_spec(env, q);
  }
  auto* job = new LoadJob(env, info[0].As<Napi::String>().Utf8Value(), check_finite, std::move(quantize), info[2]);
  return job->start();
}

}  // namespace

std::shared_ptr<model::LoadedModel> unwrap_model(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  return unwrap_instance<ModelWrap>(value, addon_data(env).model, what, "Model")->live(env, what);
}

void register_model(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = ModelWrap::define(env);
  addon_data(env).model = Napi::Persistent(ctor);
  exports.Set("Model", ctor);
  exports.Set("loadModel", Napi::Function::New(env, load_model, "loadModel"));
}

}  // namespace fineserve::addon
