// Reading arguments the same way in every binding file, so that the same mistake gets the same
// TypeError whichever function it is passed to.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fineserve::addon {

// o[key] as a number, `fallback` when undefined.
inline double optional_number(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// A copy of a typed array's elements: the caller may keep it past the call, or hand it to a
// worker thread, which must never touch JS memory. `T` must match the element size.
template <typename T>
std::vector<T> typed_array(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ElementSize() != sizeof(T)) throw Napi::TypeError::New(v.Env(), std::string(name) + " has the wrong element type");
  const T* data = reinterpret_cast<const T*>(static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  return std::vector<T>(data, data + ta.ElementLength());
}

}  // namespace fineserve::addon
