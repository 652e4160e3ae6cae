// Module entry point. Each binding file registers its own functions; this file only lists them and
// describes how the binary was built, which the loader reports when it picks a candidate.
#include "addon.h"
#include "simd/dispatch.h"

namespace fineserve::addon {
namespace {

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
  exports.Set("buildInfo", build_info(env));
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
