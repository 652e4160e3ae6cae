// Registration functions of each binding file; addon.cc calls them from the module initialiser.
#pragma once

#include <napi.h>

namespace fineserve::addon {

void register_devices(Napi::Env env, Napi::Object exports);
void register_kv_pool(Napi::Env env, Napi::Object exports);
void register_generate(Napi::Env env, Napi::Object exports);
void register_model(Napi::Env env, Napi::Object exports);
void register_thread_pool(Napi::Env env, Napi::Object exports);
void register_executor(Napi::Env env, Napi::Object exports);
void register_perplexity(Napi::Env env, Napi::Object exports);
void register_quantize(Napi::Env env, Napi::Object exports);

}  // namespace fineserve::addon
