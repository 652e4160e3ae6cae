// ThreadPool: a pool of CPU worker threads that several Executors can share, so that models
// co-located on one CPU keep to its cores together (engine/thread_pool.h).
#include <cmath>
#include <memory>
#include <string>

#include "addon.h"
#include "engine/thread_pool.h"
#include "wraps.h"

namespace fineserve::addon {
namespace {

class ThreadPoolWrap : public Napi::ObjectWrap<ThreadPoolWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "ThreadPool", {InstanceAccessor<&ThreadPoolWrap::size>("size")});
  }

  // new ThreadPool(threads): 0 or undefined = every usable core; more than that is clamped.
  explicit ThreadPoolWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ThreadPoolWrap>(info) {
    Napi::Env env = info.Env();
    double threads = 0;
    if (!info[0].IsUndefined()) {
      if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "threads must be a number");
      threads = info[0].As<Napi::Number>().DoubleValue();
    }
    if (!(threads >= 0) || std::floor(threads) != threads) {
      throw Napi::RangeError::New(env, "threads must be an integer >= 0 (0 = every usable core)");
    }
    // Anything past the core count is clamped by the pool itself; this only keeps the cast defined.
    pool = std::make_shared<engine::ThreadPool>(static_cast<unsigned>(std::fmin(threads, 65535)));
  }

  std::shared_ptr<engine::ThreadPool> pool;

 private:
  Napi::Value size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pool->size()); }
};

Napi::FunctionReference* thread_pool_constructor = nullptr;

}  // namespace

std::shared_ptr<engine::ThreadPool> unwrap_thread_pool(const Napi::Value& value, const char* what) {
  return unwrap_instance<ThreadPoolWrap>(value, thread_pool_constructor, what, "ThreadPool")->pool;
}

void register_thread_pool(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = ThreadPoolWrap::define(env);
  // Kept for the life of the process: instanceof checks in unwrap_thread_pool need it.
  thread_pool_constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  exports.Set("ThreadPool", ctor);
}

}  // namespace fineserve::addon
