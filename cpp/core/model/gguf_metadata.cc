// GGUF metadata as strings, for the tokenizer and chat template code in lib/ (which takes the
// token list, scores and merges from here for GGUF models).
#include <charconv>
#include <cmath>

#include "model/json.h"
#include "model/loader_internal.h"

namespace fineserve::model::detail {

namespace {

template <class F>
void append_float(std::string& out, F x) {
  // Shortest text that reads back to the same float: 1e-05 rather than 9.99999974738e-06.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  out.append(buf, r.ptr);
}

// JSON has no NaN/Inf: inside arrays they become null; a lone value is spelled out instead.
void append_scalar(std::string& out, const gguf::Value& v, bool in_json) {
  if (v.type == gguf::ValueType::Bool) {
    out += v.u ? "true" : "false";
  } else if (v.is_float()) {
    if (!std::isfinite(v.f)) {
      out += in_json ? "null" : std::isnan(v.f) ? "nan" : v.f > 0 ? "inf" : "-inf";
    } else if (v.type == gguf::ValueType::Float32) {
      append_float(out, float(v.f));
    } else {
      append_float(out, v.f);
    }
  } else if (v.is_integer()) {
    auto n = v.as_int();
    out += n ? std::to_string(*n) : std::to_string(v.u);
  } else if (v.type == gguf::ValueType::String) {
    if (in_json) {
      json::append_quoted(out, v.str);
    } else {
      out += v.str;
    }
  }
}

// False once `out` has grown past `cap`: the caller drops the value.
bool append_array(std::string& out, const gguf::Value& v, uint64_t cap) {
  out += '[';
  for (uint64_t k = 0; k < v.count; ++k) {
    if (k) out += ',';
    if (v.elem_type == gguf::ValueType::Array) {
      if (!append_array(out, v.arrays[k], cap)) return false;
    } else {
      append_scalar(out, v.element(k), true);
    }
    if (out.size() > cap) return false;
  }
  out += ']';
  return out.size() <= cap;
}

}  // namespace

std::map<std::string, std::string> render_metadata(const gguf::File& file, uint64_t cap) {
  std::map<std::string, std::string> out;
  std::string omitted;
  for (const auto& [key, value] : file.metadata) {
    std::string text;
    if (value.type != gguf::ValueType::Array) {
      append_scalar(text, value, false);
    } else if (!append_array(text, value, cap)) {
      omitted += omitted.empty() ? "[" : ",";
      json::append_quoted(omitted, key);
      continue;
    }
    if (text.size() > cap) {
      omitted += omitted.empty() ? "[" : ",";
      json::append_quoted(omitted, key);
      continue;
    }
    out[key] = std::move(text);
  }
  if (!omitted.empty()) out["fineserve.metadata_omitted"] = omitted + "]";
  return out;
}

}  // namespace fineserve::model::detail
