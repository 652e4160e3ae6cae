// A long core call (load_model, generate_model) run on a worker thread for JS, which gets
// { promise, cancel() } back and progress reports when it passed a callback. The core calls take an
// on_progress(fraction) that returns false to stop, which is how cancel() reaches them.
#pragma once

#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "model/model_error.h"

namespace fineserve::addon {

class ProgressJob : public Napi::AsyncProgressQueueWorker<double> {
 public:
  // Queues the job, which deletes itself once settled; cancel() may be called after that, so the
  // flag it sets is shared.
  Napi::Object start() {
    Napi::Env env = Env();
    Napi::Object handle = Napi::Object::New(env);
    handle.Set("promise", deferred_.Promise());
    handle.Set("cancel", Napi::Function::New(env, [c = cancelled_](const Napi::CallbackInfo&) { c->store(true); }));
    Queue();
    return handle;
  }

 protected:
  // `on_progress`: the JS callback, or anything else for none.
  ProgressJob(Napi::Env env, const Napi::Value& on_progress)
      : Napi::AsyncProgressQueueWorker<double>(env), deferred_(Napi::Promise::Deferred::New(env)) {
    if (on_progress.IsFunction()) progress_ = Napi::Persistent(on_progress.As<Napi::Function>());
  }

  // The core call, on the worker thread.
  virtual void run(const std::function<bool(double)>& on_progress) = 0;
  // The `code` of a failure that is not a ModelError (which carries its own).
  virtual const char* code_of(const std::exception& e) const = 0;

  bool cancelled() const { return cancelled_->load(); }

  void reject(Napi::Error e, const std::string& code) {
    e.Set("code", Napi::String::New(Env(), code));
    deferred_.Reject(e.Value());
  }

  Napi::Promise::Deferred deferred_;

 private:
  void Execute(const ExecutionProgress& progress) final {
    // Each report crosses to the JS thread, so at most one per percent (and always the last).
    double last = -1;
    auto on_progress = [&](double fraction) {
      if (fraction >= 1.0 || fraction - last >= 0.01) {
        last = fraction;
        progress.Send(&fraction, 1);
      }
      return !cancelled_->load();
    };
    try {
      run(on_progress);
    } catch (const model::ModelError& e) {
      code_ = model::errc_code(e.code());
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = code_of(e);
      SetError(e.what());
    }
  }

  void OnProgress(const double* data, size_t count) final {
    if (progress_.IsEmpty() || count == 0) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
      progress_.Call({Napi::Number::New(env, data[count - 1])});
    } catch (const Napi::Error&) {
      // A throwing callback must not end the job here: the TypeScript wrapper, which owns user
      // callbacks, cancels and reports it.
    }
  }

  void OnError(const Napi::Error& err) final { reject(err, code_); }

  Napi::FunctionReference progress_;
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
  std::string code_;
};

}  // namespace fineserve::addon
