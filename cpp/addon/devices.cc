// devices(): CPU and CUDA discovery, run on a worker thread because the first CUDA runtime call
// can take hundreds of milliseconds (driver and context initialisation).
#include "addon.h"
#include "cpu_info.h"
#include "cuda_devices.h"

namespace fineserve::addon {
namespace {

Napi::Object to_js(Napi::Env env, const CpuInfo& cpu) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("model", cpu.model);
  o.Set("logicalCores", cpu.logical_cores);
  o.Set("physicalCores", cpu.physical_cores);
  o.Set("memoryBytes", static_cast<double>(cpu.memory_bytes));
  Napi::Array supported = Napi::Array::New(env, cpu.simd_supported.size());
  for (uint32_t i = 0; i < cpu.simd_supported.size(); ++i) {
    supported.Set(i, simd::level_name(cpu.simd_supported[i]));
  }
  o.Set("simdSupported", supported);
  o.Set("simd", simd::level_name(cpu.simd_active));
  if (!cpu.simd_note.empty()) o.Set("simdNote", cpu.simd_note);
  return o;
}

Napi::Object to_js(Napi::Env env, const CudaReport& cuda) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", cuda.compiled);
  o.Set("available", cuda.available);
  if (!cuda.reason.empty()) o.Set("reason", cuda.reason);
  o.Set("runtimeVersion", cuda.runtime_version);
  o.Set("driverVersion", cuda.driver_version);
  Napi::Array list = Napi::Array::New(env, cuda.devices.size());
  for (uint32_t i = 0; i < cuda.devices.size(); ++i) {
    const CudaDeviceInfo& d = cuda.devices[i];
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", d.index);
    dev.Set("name", d.name);
    dev.Set("memoryBytes", static_cast<double>(d.total_memory_bytes));
    dev.Set("smCount", d.sm_count);
    dev.Set("computeCapabilityMajor", d.cc_major);
    dev.Set("computeCapabilityMinor", d.cc_minor);
    dev.Set("pciBusId", d.pci_bus_id);
    list.Set(i, dev);
  }
  o.Set("devices", list);
  return o;
}

class DevicesWorker : public Napi::AsyncWorker {
 public:
  explicit DevicesWorker(Napi::Env env)
      : Napi::AsyncWorker(env, "fineserve:devices"), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    cpu_ = query_cpu();
    cuda_ = query_cuda();
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    result.Set("cpu", to_js(env, cpu_));
    result.Set("cuda", to_js(env, cuda_));
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& err) override { deferred_.Reject(err.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  CpuInfo cpu_;
  CudaReport cuda_;
};

Napi::Value devices(const Napi::CallbackInfo& info) {
  auto* worker = new DevicesWorker(info.Env());
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace

void register_devices(Napi::Env env, Napi::Object exports) {
  exports.Set("devices", Napi::Function::New(env, devices, "devices"));
}

}  // namespace fineserve::addon
