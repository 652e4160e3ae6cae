// Module entry point. Each binding file registers its own functions; this file only lists them and
// describes how the binary was built, which the loader reports when it picks a candidate.
#include <cstdlib>  // defines __GLIBC__ where it applies
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "addon.h"
#include "simd/dispatch.h"
#include "wraps.h"

namespace fineserve::addon {

void AddonData::step_started() {
  std::lock_guard<std::mutex> lock(mu_);
  ++running_;
}

void AddonData::step_ended() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--running_ == 0) idle_.notify_all();
}

void AddonData::wait_for_steps() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [&] { return running_ == 0; });
}

AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

namespace {
constexpr int64_t kTrimBytes = int64_t{16} << 20;
}  // namespace

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

ExternalBytes::ExternalBytes(napi_env env, int64_t bytes)
    : env_(env), bytes_(bytes), counter_(addon_data(Napi::Env(env)).external_bytes) {
  if (bytes_ != 0) Napi::MemoryManagement::AdjustExternalMemory(Napi::Env(env), bytes_);
  *counter_ += bytes_;
}

ExternalBytes::~ExternalBytes() {
  *counter_ -= bytes_;
  // Status ignored: a destructor must not throw, and a refused report changes only GC pacing.
  int64_t total = 0;
  if (bytes_ != 0) napi_adjust_external_memory(env_, -bytes_, &total);
  // What was reported has just been freed (the object goes first); give big frees back at once.
  if (bytes_ >= kTrimBytes) release_free_memory();
}

namespace {

void wait_for_steps(void* data) { static_cast<AddonData*>(data)->wait_for_steps(); }

// externalBytes() -> the bytes this environment's models and host KV pools hold now, counted until
// their last owner (the JS object or an executor) lets go; what the addon reports to V8.
Napi::Value external_bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(addon_data(info.Env()).external_bytes->load()));
}

Napi::Object build_info(Napi::Env env) {
  Napi::Object info = Napi::Object::New(env);
  Napi::Array levels = Napi::Array::New(env);
  uint32_t i = 0;
  for (simd::Level level : simd::compiled_levels()) levels.Set(i++, simd::level_name(level));
  info.Set("simdCompiled", levels);
#if defined(FINESERVE_WITH_CUDA)
  info.Set("cuda", true);
#else
  info.Set("cuda", false);
#endif
  info.Set("napiVersion", NAPI_VERSION);
  info.Set("compiler", __VERSION__);
  return info;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  // One per environment: this runs again in each Worker that loads the addon. node-addon-api's
  // default finalizer deletes it when the environment goes; the cleanup hook, which runs before
  // that, lets any step still on the thread pool finish first.
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  napi_add_env_cleanup_hook(env, wait_for_steps, data);
  exports.Set("buildInfo", build_info(env));
  exports.Set("externalBytes", Napi::Function::New(env, external_bytes, "externalBytes"));
  register_devices(env, exports);
  register_kv_pool(env, exports);
  register_generate(env, exports);
  register_model(env, exports);
  register_thread_pool(env, exports);
  register_executor(env, exports);
  register_perplexity(env, exports);
  register_quantize(env, exports);
  return exports;
}

}  // namespace
}  // namespace fineserve::addon

// NODE_API_MODULE pastes the name into an identifier, so it needs an unqualified function.
static Napi::Object InitFineserve(Napi::Env env, Napi::Object exports) {
  return fineserve::addon::init(env, exports);
}

NODE_API_MODULE(fineserve, InitFineserve)
