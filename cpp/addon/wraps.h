// Access from one binding file to the native objects another wraps (an executor needs the model,
// the KV pool and the thread pool it was given). Each function throws a JS TypeError naming `what`
// when the value is not the expected wrapper.
#pragma once

#include <napi.h>

#include <memory>
#include <string>

#include "engine/thread_pool.h"
#include "kv/kv_pool.h"
#include "model/loader.h"

namespace fineserve::addon {

kv::KvPool* unwrap_kv_pool(const Napi::Value& value, const char* what);
std::shared_ptr<model::LoadedModel> unwrap_model(const Napi::Value& value, const char* what);
std::shared_ptr<engine::ThreadPool> unwrap_thread_pool(const Napi::Value& value, const char* what);

// The wrapper behind `value` when it is an instance of the class `ctor` made, else a JS
// TypeError "<what> must be a native <kind>". The check matters: Unwrap on another object is
// undefined behaviour.
template <class Wrap>
Wrap* unwrap_instance(const Napi::Value& value, const Napi::FunctionReference* ctor, const char* what, const char* kind) {
  if (!value.IsObject() || ctor == nullptr || !value.As<Napi::Object>().InstanceOf(ctor->Value())) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a native " + kind);
  }
  return Wrap::Unwrap(value.As<Napi::Object>());
}

// A KvGeometry as the JS object lib/kv-pool.ts's KvGeometry describes.
Napi::Object geometry_js(Napi::Env env, const kv::KvGeometry& g);

// JS Error with `code` set, for core errors that carry one.
[[noreturn]] void throw_coded(Napi::Env env, const char* code, const std::string& message);

}  // namespace fineserve::addon
