// What the binding files share: the per-environment addon state, access from one binding file to
// the native objects another wraps (an executor needs the model, the KV pool and the thread pool
// it was given), and the external-memory accounting of what those objects hold.
#pragma once

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "engine/thread_pool.h"
#include "kv/kv_pool.h"
#include "model/loader.h"

namespace fineserve::addon {

// The addon's state in one JS environment (the main thread, each worker_threads Worker): the
// constructors instanceof checks need, and the steps running on the thread pool. Set as the
// environment's instance data, so a Worker's constructors never serve another thread's objects;
// freed with the environment.
struct AddonData {
  Napi::FunctionReference model, kv_pool, thread_pool;
  // What this environment's ExternalBytes report now (externalBytes() in JS). Shared, since a
  // report may be withdrawn after the environment's finalizers freed this struct.
  std::shared_ptr<std::atomic<int64_t>> external_bytes = std::make_shared<std::atomic<int64_t>>(0);

  // Steps in their Execute (on a libuv thread). The environment's cleanup hook waits for none, so
  // no step outlives the objects its environment frees.
  void step_started();
  void step_ended();
  void wait_for_steps();

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  int running_ = 0;
};

AddonData& addon_data(Napi::Env env);

// Each function throws a JS TypeError naming `what` when the value is not the expected wrapper,
// and a JS Error with code ERR_MODEL_DISPOSED / ERR_KV_DISPOSED / ERR_THREAD_POOL_DISPOSED when it
// is one whose dispose() was called. The caller gets a share of the object.
std::shared_ptr<kv::KvPool> unwrap_kv_pool(const Napi::Value& value, const char* what);
std::shared_ptr<model::LoadedModel> unwrap_model(const Napi::Value& value, const char* what);
std::shared_ptr<engine::ThreadPool> unwrap_thread_pool(const Napi::Value& value, const char* what);

// The wrapper behind `value` when it is an instance of the class `ctor` made, else a JS
// TypeError "<what> must be a native <kind>". The check matters: Unwrap on another object is
// undefined behaviour.
template <class Wrap>
Wrap* unwrap_instance(const Napi::Value& value, const Napi::FunctionReference& ctor, const char* what, const char* kind) {
  if (!value.IsObject() || ctor.IsEmpty() || !value.As<Napi::Object>().InstanceOf(ctor.Value())) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a native " + kind);
  }
  return Wrap::Unwrap(value.As<Napi::Object>());
}

// Hands the allocator's free pages back to the system (glibc's malloc_trim; nothing elsewhere).
// Freeing a model's big buffers raises glibc's dynamic mmap threshold, so the next load's buffers
// and temporaries come from the heap arenas, which keep their pages after free: without this, RSS
// after a load/unload cycle stays tens of MB above what the first cycle left. Any thread.
void release_free_memory();

// `bytes` of native memory reported to V8 (Napi::MemoryManagement::AdjustExternalMemory) and
// counted in AddonData::external_bytes for as long as this lives, so the GC sees what a small JS
// object keeps alive. Made on the JS thread.
class ExternalBytes {
 public:
  ExternalBytes(napi_env env, int64_t bytes);
  ~ExternalBytes();
  ExternalBytes(const ExternalBytes&) = delete;
  ExternalBytes& operator=(const ExternalBytes&) = delete;

 private:
  napi_env env_;
  int64_t bytes_;
  std::shared_ptr<std::atomic<int64_t>> counter_;
};

// Shared ownership of `object`, reported as `bytes` of external memory until its last owner (a
// wrap, an executor) drops it. Every owner lives on the environment's JS thread, so the report is
// withdrawn there.
template <class T>
std::shared_ptr<T> share_tracked(napi_env env, std::unique_ptr<T> object, uint64_t bytes) {
  struct Held {
    Held(napi_env env, std::unique_ptr<T> o, uint64_t bytes) : external(env, static_cast<int64_t>(bytes)), object(std::move(o)) {}
    ExternalBytes external;
    std::unique_ptr<T> object;  // freed before the report is withdrawn
  };
  T* raw = object.get();
  return std::shared_ptr<T>(std::make_shared<Held>(env, std::move(object), bytes), raw);
}

// A KvGeometry as the JS object lib/kv-pool.ts's KvGeometry describes.
Napi::Object geometry_js(Napi::Env env, const kv::KvGeometry& g);

// JS Error with `code` set, for core errors that carry one.
[[noreturn]] void throw_coded(Napi::Env env, const char* code, const std::string& message);

}  // namespace fineserve::addon
