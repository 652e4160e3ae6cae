// perplexity(model, tokens, { kvFormat, threads, chunk }, onProgress?) -> { promise, cancel() }:
// engine::perplexity on a worker thread, resolving { nllSum, scored, perplexity }.
#include "addon.h"
#include "args.h"
#include "engine/perplexity.h"
#include "progress_job.h"
#include "wraps.h"

namespace fineserve::addon {
namespace {

class PerplexityJob : public ProgressJob {
 public:
  PerplexityJob(Napi::Env env, std::shared_ptr<model::LoadedModel> model, std::vector<int32_t> tokens,
                kv::KvFormat format, uint32_t threads, uint32_t chunk, const Napi::Value& on_progress)
      : ProgressJob(env, on_progress),
        model_(std::move(model)),
        tokens_(std::move(tokens)),
        format_(format),
        threads_(threads),
        chunk_(chunk) {}

 private:
  void run(const std::function<bool(double)>& on_progress) override {
    result_ = engine::perplexity(*model_, tokens_, format_, threads_, chunk_, on_progress);
  }

  // ModelErrors (cancellation) carry their own code; everything else is a bad argument.
  const char* code_of(const std::exception&) const override { return "ERR_EXECUTOR_INVALID"; }

  void OnOK() override {
    // As loadModel: a cancel that arrived after the last chunk still wins, since the caller (or a
    // throwing onProgress) asked for no result.
    if (cancelled()) {
      reject(Napi::Error::New(Env(), "perplexity was cancelled"), model::errc_code(model::ModelErrc::Cancelled));
      return;
    }
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("nllSum", result_.nll_sum);
    o.Set("scored", static_cast<double>(result_.scored));
    o.Set("perplexity", result_.perplexity());
    deferred_.Resolve(o);
  }

  // Held for the job's life: JS may drop the model while it runs.
  std::shared_ptr<model::LoadedModel> model_;
  std::vector<int32_t> tokens_;
  kv::KvFormat format_;
  uint32_t threads_, chunk_;
  engine::PerplexityResult result_;
};

Napi::Value perplexity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<model::LoadedModel> model = unwrap_model(info[0], "model");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, "tokens must be an Int32Array");
  }
  std::vector<int32_t> tokens = typed_array<int32_t>(info[1], "tokens");
  Napi::Object o = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  std::string name = o.Get("kvFormat").IsString() ? o.Get("kvFormat").As<Napi::String>().Utf8Value() : "f32";
  kv::KvFormat format;
  if (!kv::parse_format(name, &format)) {
    throw_coded(env, "ERR_EXECUTOR_INVALID", "kvFormat = \"" + name + "\" is not a KV format");
  }
  double threads = optional_number(o, "threads", 0), chunk = optional_number(o, "chunk", 128);
  if (!(threads >= 0 && threads <= 4096 && threads == static_cast<uint32_t>(threads))) {
    throw_coded(env, "ERR_EXECUTOR_INVALID", "threads = " + std::to_string(threads) + ": must be an integer >= 0");
  }
  if (!(chunk >= 1 && chunk <= 1e9 && chunk == static_cast<uint32_t>(chunk))) {
    throw_coded(env, "ERR_EXECUTOR_INVALID", "chunk = " + std::to_string(chunk) + ": must be an integer >= 1");
  }
  auto* job = new PerplexityJob(env, std::move(model), std::move(tokens), format, static_cast<uint32_t>(threads),
                                static_cast<uint32_t>(chunk), info[3]);
  return job->start();
}

}  // namespace

void register_perplexity(Napi::Env env, Napi::Object exports) {
  exports.Set("perplexity", Napi::Function::New(env, perplexity, "perplexity"));
}

}  // namespace fineserve::addon
