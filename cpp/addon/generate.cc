// generateModel(): writes a random-weight model (model/generate.h) on a worker thread, with
// progress and cancellation like loadModel. Translation only.
#include "addon.h"
#include "args.h"
#include "model/generate.h"
#include "progress_job.h"

namespace fineserve::addon {
namespace {

std::string string_field(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// The fallbacks passed here are all valid, so checking them too changes nothing.
double count_field(const Napi::Object& o, const char* key, double fallback) {
  double d = optional_number(o, key, fallback);
  if (!(d >= 0) || d != static_cast<double>(static_cast<uint64_t>(d)) || d > 9007199254740991.0) {
    throw Napi::RangeError::New(o.Env(), std::string(key) + " must be a non-negative integer");
  }
  return d;
}

model::DType dtype_field(const Napi::Object& o) {
  std::string s = string_field(o, "dtype", "f16");
  if (s == "f32") return model::DType::F32;
  if (s == "f16") return model::DType::F16;
  if (s == "bf16") return model::DType::BF16;
  throw Napi::RangeError::New(o.Env(), "dtype must be \"f32\", \"f16\" or \"bf16\", got \"" + s + "\"");
}

class GenerateJob : public ProgressJob {
 public:
  GenerateJob(Napi::Env env, model::GenerateOptions options, const Napi::Value& on_progress)
      : ProgressJob(env, on_progress), options_(std::move(options)) {}

 private:
  void run(const std::function<bool(double)>& on_progress) override {
    options_.on_progress = on_progress;
    result_ = model::generate_model(options_);
  }

  const char* code_of(const std::exception& e) const override {
    return dynamic_cast<const std::invalid_argument*>(&e) != nullptr ? "ERR_GENERATE_INVALID" : "ERR_GENERATE_IO";
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("path", result_.path);
    o.Set("parameters", static_cast<double>(result_.parameters));
    o.Set("bytes", static_cast<double>(result_.bytes));
    deferred_.Resolve(o);
  }

  model::GenerateOptions options_;
  model::GenerateResult result_;
};

// generateModel({shape, layers?, vocab?, dtype?, format, seed?, out, maxShardBytes?}, onProgress?)
//   -> { promise, cancel() }
Napi::Value generate_model(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  model::GenerateOptions options;
  options.shape = string_field(o, "shape", options.shape);
  options.layers = static_cast<uint32_t>(count_field(o, "layers", 0));
  options.vocab = static_cast<uint32_t>(count_field(o, "vocab", 0));
  options.dtype = dtype_field(o);
  options.format = string_field(o, "format", options.format);
  options.seed = static_cast<uint64_t>(count_field(o, "seed", 0));
  options.out = string_field(o, "out", "");
  options.max_shard_bytes = static_cast<uint64_t>(count_field(o, "maxShardBytes", static_cast<double>(options.max_shard_bytes)));
  auto* job = new GenerateJob(env, std::move(options), info[1]);
  return job->start();
}

}  // namespace

void register_generate(Napi::Env env, Napi::Object exports) {
  exports.Set("generateModel", Napi::Function::New(env, generate_model, "generateModel"));
  Napi::Array shapes = Napi::Array::New(env);
  uint32_t i = 0;
  for (const std::string& s : model::model_shapes()) shapes.Set(i++, s);
  exports.Set("modelShapes", shapes);
}

}  // namespace fineserve::addon
