#include "model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>

#include "model/json.h"
#include "model/model_error.h"

namespace fineserve::model::safetensors {

namespace {

struct DTypeName {
  const char* name;
  DType dtype;
};
const DTypeName kDTypes[] = {{"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}};

std::string quoted(std::string_view s) {
  std::string out;
  json::append_quoted(out, s.substr(0, 256));
  return out;
}

std::string list(const std::vector<uint64_t>& v) {
  std::string s = "[";
  for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
  return s + "]";
}

class Parser {
 public:
  Parser(const uint8_t* data, uint64_t size, const std::string& path) {
    file_.path = path;
    file_.base = data;
    file_.size = size;
  }

  File run() {
    header_length();
    std::string_view text(reinterpret_cast<const char*>(file_.base + 8), file_.header_size);
    json::Value root = json::parse(text, file_.path + ": header", 8);
    if (!root.is_object()) {
      fail("", std::string("the header is a JSON ") + json::type_name(root.type()) + ", expected an object");
    }
    data_size_ = file_.size - file_.data_offset;
    file_.tensors.reserve(root.size());
    for (size_t k = 0; k < root.size(); ++k) {
      if (root.keys()[k] == "__metadata__") continue;  // free-form strings; nothing we need
      tensor(root.keys()[k], root.items()[k]);
    }
    check_layout();
    for (size_t k = 0; k < file_.tensors.size(); ++k) file_.index.emplace(file_.tensors[k].name, k);
    return std::move(file_);
  }

 private:
  [[noreturn]] void fail(const std::string& tensor, const std::string& what,
                         ModelErrc code = ModelErrc::Corrupt) const {
    throw ModelError(code, file_.path + ": " + (tensor.empty() ? "" : "tensor " + quoted(tensor) + ": ") + what);
  }

  void header_length() {
    if (file_.size < 8) {
      fail("", "the file is " + std::to_string(file_.size) + " bytes, too short for the 8-byte header length");
    }
    uint64_t n;
    std::memcpy(&n, file_.base, 8);  // little-endian, as is every host we build for
    if (n > kMaxHeaderSize) {
      fail("", "header length " + std::to_string(n) + " exceeds the format's limit of " +
                   std::to_string(kMaxHeaderSize) + " bytes: not a safetensors file, or a corrupt one");
    }
    if (n > file_.size - 8) {
      fail("", "header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(file_.size) + " bytes)");
    }
    file_.header_size = n;
    file_.data_offset = 8 + n;
  }

  uint64_t field_uint(const std::string& name, const json::Value& v, const char* field) const {
    auto u = v.as_uint64();
    if (!u) {
      fail(name, std::string(field) + " holds " +
                     (v.is_number() ? v.number_text() : std::string("a ") + json::type_name(v.type())) +
                     ", expected a non-negative integer");
    }
    return *u;
  }

  void tensor(const std::string& name, const json::Value& v) {
    if (!v.is_object()) {
      fail(name, std::string("entry is a JSON ") + json::type_name(v.type()) + ", expected an object");
    }
    const json::Value* dtype = v.find("dtype");
    const json::Value* shape = v.find("shape");
    const json::Value* offsets = v.find("data_offsets");
    if (!dtype || !dtype->is_string()) fail(name, "\"dtype\" is missing or not a string");
    if (!shape || !shape->is_array()) fail(name, "\"shape\" is missing or not an array");
    if (!offsets || !offsets->is_array() || offsets->size() != 2) {
      fail(name, "\"data_offsets\" is missing or not an array of two integers");
    }

    TensorInfo t;
    t.name = name;
    const DTypeName* dt = std::find_if(std::begin(kDTypes), std::end(kDTypes),
                                       [&](const DTypeName& d) { return dtype->as_string() == d.name; });
    if (dt == std::end(kDTypes)) {
      fail(name, "dtype " + quoted(dtype->as_string()) + " is not supported; this build reads F32, F16 and BF16",
           ModelErrc::Unsupported);
    }
    t.dtype = dt->dtype;

    uint64_t elements = 1;
    bool overflow = false;
    for (const json::Value& d : shape->items()) {
      uint64_t n = field_uint(name, d, "shape");
      overflow = overflow || (n != 0 && elements > std::numeric_limits<uint64_t>::max() / n);
      elements *= n;
      t.shape.push_back(n);
    }
    uint64_t width = dtype_bytes(t.dtype);
    if (overflow || elements > std::numeric_limits<uint64_t>::max() / width) {
      fail(name, "shape " + list(t.shape) + " overflows 64 bits");
    }
    t.begin = field_uint(name, offsets->items()[0], "data_offsets[0]");
    t.end = field_uint(name, offsets->items()[1], "data_offsets[1]");
    if (t.begin > t.end) fail(name, "data_offsets " + list({t.begin, t.end}) + " run backwards");
    if (t.end > data_size_) {
      fail(name, "data_offsets " + list({t.begin, t.end}) + " run past the end of the file (" +
                     std::to_string(data_size_) + " bytes of data)");
    }
    if (t.end - t.begin != elements * width) {
      fail(name, "data_offsets " + list({t.begin, t.end}) + " hold " + std::to_string(t.end - t.begin) +
                     " bytes, but shape " + list(t.shape) + " of " + dtype_name(t.dtype) + " needs " +
                     std::to_string(elements * width));
    }
    file_.tensors.push_back(std::move(t));
  }

  // Overlapping tensors would alias each other's bytes, and bytes that belong to no tensor mean
  // the offsets do not describe the data (padding or garbage that shifts every tensor, a dtype
  // or shape that does not match what was written). Like the reference implementation
  // (Metadata::validate), the tensors must tile the data section from 0 to its end.
  void check_layout() {
    auto& ts = file_.tensors;
    std::sort(ts.begin(), ts.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    size_t last = 0;  // the non-empty tensor reaching furthest so far
    bool any = false;
    for (size_t k = 0; k < ts.size(); ++k) {
      if (ts[k].end == ts[k].begin) continue;
      if (any && ts[last].end > ts[k].begin) {
        fail(ts[k].name, "data_offsets " + list({ts[k].begin, ts[k].end}) + " overlap tensor " +
                             quoted(ts[last].name) + " at " + list({ts[last].begin, ts[last].end}));
      }
      if (any && ts[last].end < ts[k].begin) {
        fail(ts[k].name, "data_offsets " + list({ts[k].begin, ts[k].end}) + " leave a gap of " +
                             std::to_string(ts[k].begin - ts[last].end) + " bytes after tensor " +
                             quoted(ts[last].name) + ", which ends at " + std::to_string(ts[last].end) +
                             ": the offsets do not tile the data section");
      }
      if (!any && ts[k].begin != 0) {
        fail(ts[k].name, "data_offsets " + list({ts[k].begin, ts[k].end}) + ": the first tensor starts at byte " +
                             std::to_string(ts[k].begin) + " of the data section, not 0 (the header is " +
                             std::to_string(file_.header_size) + " bytes; padding or garbage shifts the data?)");
      }
      if (!any || ts[k].end > ts[last].end) last = k;
      any = true;
    }
    const uint64_t covered = any ? ts[last].end : 0;
    if (covered != data_size_) {
      fail("", "the data section holds " + std::to_string(data_size_) + " bytes (file of " +
                   std::to_string(file_.size) + " bytes, header of " + std::to_string(file_.header_size) +
                   "), but the tensors' data_offsets end at " + std::to_string(covered) +
                   (any ? " (tensor " + quoted(ts[last].name) + ")" : std::string()) +
                   ": the header's offsets do not describe the data");
    }
  }

  File file_;
  uint64_t data_size_ = 0;
};

}  // namespace

const TensorInfo* File::find(std::string_view name) const {
  auto it = index.find(std::string(name));
  return it == index.end() ? nullptr : &tensors[it->second];
}

TensorView File::view(const TensorInfo& t) const {
  TensorView v;
  v.name = t.name;
  v.dtype = t.dtype;
  v.shape = t.shape;
  v.data = base + data_offset + t.begin;
  v.bytes = t.end - t.begin;
  return v;
}

File parse(const uint8_t* data, uint64_t size, const std::string& path) {
  return Parser(data, size, path).run();
}

}  // namespace fineserve::model::safetensors
