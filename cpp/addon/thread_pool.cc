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
    return DefineClass(env, "ThreadPool",
                       {InstanceAccessor<&ThreadPoolWrap::size>("size"), InstanceMethod<&ThreadPoolWrap::dispose>("dispose")});
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

  // The pool, or ERR_THREAD_POOL_DISPOSED naming `used`.
  const std::shared_ptr<engine::ThreadPool>& live(Napi::Env env, const std::string& used) const {
    if (!pool) throw_coded(env, "ERR_THREAD_POOL_DISPOSED", used + ": the ThreadPool was disposed");
    return pool;
  }

 private:
  Napi::Value size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), live(info.Env(), "ThreadPool.size")->size());
  }

  // Drops this wrap's share: the threads stop now unless an executor still runs on them.
  void dispose(const Napi::CallbackInfo&) { pool.reset(); }
};

}  // namespace

std::shared_ptr<engine::ThreadPool> unwrap_thread_pool(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  return unwrap_instance<ThreadPoolWrap>(value, addon_data(env).thread_pool, what, "ThreadPool")->live(env, what);
}

void register_thread_pool(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = ThreadPoolWrap::define(env);
  // Per environment: instanceof checks in unwrap_thread_pool need it.
  addon_data(env).thread_pool = Napi::Persistent(ctor);
  exports.Set("ThreadPool", ctor);
}

}  // namespace fineserve::addon
