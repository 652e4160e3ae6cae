// quantizeGguf(): writes a Q8_0, Q4_0, Q4_K, Q6_K or Q4_K_M copy of a GGUF file (model::write_quantized_gguf) on a
// worker thread, with progress and cancel().
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "addon.h"
#include "model/gguf_quantize.h"
#include "progress_job.h"
#include "wraps.h"

namespace fineserve::addon {
namespace {

class QuantizeJob : public ProgressJob {
 public:
  QuantizeJob(Napi::Env env, std::string src, std::string dst, model::GgufQuantType type, const Napi::Value& on_progress)
      : ProgressJob(env, on_progress), src_(std::move(src)), dst_(std::move(dst)), type_(type) {}

 private:
  void run(const std::function<bool(double)>& on_progress) override {
    result_ = model::write_quantized_gguf(src_, dst_, type_, on_progress);
  }

  // Not a ModelError: a bad argument, or the output could not be written (disk full, no permission).
  const char* code_of(const std::exception& e) const override {
    return dynamic_cast<const std::invalid_argument*>(&e) != nullptr ? "ERR_MODEL_PRECISION" : "ERR_MODEL_WRITE";
  }

  void OnOK() override {
    // A cancel that arrived after the last block was written still wins, as in loadModel: the
    // caller asked for no file.
    if (cancelled()) {
      std::remove(dst_.c_str());
      reject(Napi::Error::New(Env(), "quantizing " + src_ + " to " + dst_ + " was cancelled"),
             model::errc_code(model::ModelErrc::Cancelled));
      return;
    }
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("path", result_.path);
    o.Set("bytes", static_cast<double>(result_.bytes));
    o.Set("quantized", static_cast<double>(result_.quantized.size()));
    Napi::Array kept = Napi::Array::New(env, result_.kept.size());
    for (uint32_t i = 0; i < result_.kept.size(); ++i) {
      Napi::Object k = Napi::Object::New(env);
      k.Set("name", result_.kept[i].name);
      k.Set("type", model::dtype_name(result_.kept[i].type));
      kept.Set(i, k);
    }
    o.Set("kept", kept);
    deferred_.Resolve(o);
  }

  std::string src_, dst_;
  model::GgufQuantType type_;
  model::QuantizeGgufResult result_;
};

// quantizeGguf(src, dst, type: 'q8_0' | 'q4_0' | 'q4_k' | 'q6_k' | 'q4_k_m', onProgress?) -> { promise, cancel() }
Napi::Value quantize_gguf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "src must be a string");
  if (!info[1].IsString()) throw Napi::TypeError::New(env, "dst must be a string");
  if (!info[2].IsString()) throw Napi::TypeError::New(env, "type must be a string");
  std::string name = info[2].As<Napi::String>().Utf8Value();
  std::optional<model::GgufQuantType> type = model::gguf_quant_type_from_name(name);
  if (!type) {
    std::string names;
    for (const std::string& n : model::gguf_quant_type_names()) names += (names.empty() ? "" : ", ") + n;
    throw_coded(env, "ERR_MODEL_PRECISION", "type = \"" + name + "\": GGUF files are written as one of " + names);
  }
  auto* job = new QuantizeJob(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                              *type, info[3]);
  return job->start();
}

}  // namespace

void register_quantize(Napi::Env env, Napi::Object exports) {
  exports.Set("quantizeGguf", Napi::Function::New(env, quantize_gguf, "quantizeGguf"));
}

}  // namespace fineserve::addon
