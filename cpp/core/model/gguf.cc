#include "model/gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>

#include "model/ggml_type.h"
#include "model/json.h"
#include "model/model_error.h"

namespace fineserve::model::gguf {

namespace {

constexpr uint32_t kMaxDims = 4;             // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;            // arrays of arrays; real files use at most 1
constexpr uint64_t kMaxNestedArrays = 1u << 20;  // bounds the memory nested arrays may cost

// Counts come from the file: reserve no more than a real file needs up front, so a corrupt count
// in a multi-GB file fails at its first missing entry rather than in a giant allocation.
uint64_t reserve_hint(uint64_t count) { return std::min<uint64_t>(count, 1u << 16); }

std::string quoted(std::string_view s) {
  std::string out;
  json::append_quoted(out, s.substr(0, 256));
  return out;
}

std::string dims(const std::vector<uint64_t>& ne) {
  std::string s = "[";
  for (size_t d = 0; d < ne.size(); ++d) s += (d ? ", " : "") + std::to_string(ne[d]);
  return s + "]";
}

// A cursor over the span that turns every short read into a Corrupt error naming the file, what
// is being read (`context`, set by the caller per key or tensor) and where.
class Reader {
 public:
  Reader(const uint8_t* data, uint64_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  std::string context;

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return data_ + pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw ModelError(ModelErrc::Corrupt, path_ + ": " + (context.empty() ? "" : context + ": ") + what);
  }

  template <class T>
  T read(const char* field) {
    if (remaining() < sizeof(T)) {
      fail(std::string(field) + " at byte " + std::to_string(pos_) + " is cut off: the file ends at byte " +
           std::to_string(size_));
    }
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // GGUF is little-endian, as is every host we build for
    pos_ += sizeof(T);
    return v;
  }

  void skip(uint64_t n, const char* field) {
    if (remaining() < n) {
      fail(std::string(field) + ": " + std::to_string(n) + " bytes at byte " + std::to_string(pos_) +
           " run past the end of the file (" + std::to_string(size_) + " bytes)");
    }
    pos_ += n;
  }

  std::string_view read_string(const char* field) {
    uint64_t at = pos_;
    uint64_t len = read<uint64_t>(field);
    if (len > remaining()) {
      fail(std::string(field) + ": string length " + std::to_string(len) + " at byte " + std::to_string(at) +
           " runs past the end of the file (" + std::to_string(size_) + " bytes)");
    }
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::Float64); }

// The fewest bytes an element of `t` can take, so a count can be checked before anything is
// allocated for it.
uint64_t min_element_bytes(ValueType t) {
  if (t == ValueType::String) return 8;       // length
  if (t == ValueType::Array) return 4 + 8;    // element type + count
  return value_type_size(t);
}

class Parser {
 public:
  Parser(const uint8_t* data, uint64_t size, const std::string& path) : r_(data, size, path) {
    file_.path = path;
    file_.base = data;
    file_.size = size;
  }

  File run() {
    header();
    metadata();
    alignment();
    tensors();
    data_section();
    return std::move(file_);
  }

 private:
  void header() {
    r_.context = "header";
    if (file_.size < 4) r_.fail("the file is " + std::to_string(file_.size) + " bytes, too short for the GGUF magic");
    uint8_t magic[4];
    std::memcpy(magic, r_.here(), 4);
    if (std::memcmp(magic, "GGUF", 4) != 0) {
      char hex[32];
      std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", magic[0], magic[1], magic[2], magic[3]);
      r_.fail(std::string("magic is ") + hex + ", expected \"GGUF\" (47 47 55 46): not a GGUF file");
    }
    r_.skip(4, "magic");
    uint32_t v = r_.read<uint32_t>("version");
    uint32_t swapped = __builtin_bswap32(v);
    if (v != 2 && v != 3) {
      std::string why = (swapped == 2 || swapped == 3) ? " (a big-endian GGUF; only little-endian files are read)"
                        : v == 1                          ? " (GGUF v1 predates 64-bit counts; re-convert the model)"
                                                          : "";
      throw ModelError(ModelErrc::Unsupported,
                       file_.path + ": header: GGUF version " + std::to_string(v) + " is not supported" + why +
                           "; versions 2 and 3 are");
    }
    file_.version = v;
    tensor_count_ = r_.read<uint64_t>("tensor_count");
    kv_count_ = r_.read<uint64_t>("metadata_kv_count");
    // Cheap bound before any allocation: each key-value pair takes at least 13 bytes (key length,
    // type, one-byte value), each tensor info at least 24.
    if (kv_count_ > r_.remaining() / 13) {
      r_.fail("metadata_kv_count " + std::to_string(kv_count_) + " cannot fit in the " +
              std::to_string(r_.remaining()) + " bytes after the header");
    }
    if (tensor_count_ > r_.remaining() / 24) {
      r_.fail("tensor_count " + std::to_string(tensor_count_) + " cannot fit in the " +
              std::to_string(r_.remaining()) + " bytes after the header");
    }
  }

  void metadata() {
    file_.metadata.reserve(reserve_hint(kv_count_));
    for (uint64_t k = 0; k < kv_count_; ++k) {
      r_.context = "metadata key #" + std::to_string(k);
      std::string key(r_.read_string("key"));
      r_.context = "metadata key " + quoted(key);
      uint32_t type = r_.read<uint32_t>("value type");
      if (!valid_type(type)) r_.fail("value type " + std::to_string(type) + " is not a GGUF type (0..12)");
      Value v;
      value(static_cast<ValueType>(type), v, 0);
      if (!file_.metadata_index.emplace(key, file_.metadata.size()).second) r_.fail("the key appears twice");
      file_.metadata.emplace_back(std::move(key), std::move(v));
    }
    r_.context.clear();
  }

  void value(ValueType t, Value& out, int depth) {
    out.type = t;
    switch (t) {
      case ValueType::UInt8: out.u = r_.read<uint8_t>("uint8 value"); return;
      case ValueType::Int8: out.i = r_.read<int8_t>("int8 value"); return;
      case ValueType::UInt16: out.u = r_.read<uint16_t>("uint16 value"); return;
      case ValueType::Int16: out.i = r_.read<int16_t>("int16 value"); return;
      case ValueType::UInt32: out.u = r_.read<uint32_t>("uint32 value"); return;
      case ValueType::Int32: out.i = r_.read<int32_t>("int32 value"); return;
      case ValueType::UInt64: out.u = r_.read<uint64_t>("uint64 value"); return;
      case ValueType::Int64: out.i = r_.read<int64_t>("int64 value"); return;
      case ValueType::Float32: out.f = r_.read<float>("float32 value"); return;
      case ValueType::Float64: out.f = r_.read<double>("float64 value"); return;
      case ValueType::Bool: {
        uint8_t b = r_.read<uint8_t>("bool value");
        if (b > 1) r_.fail("bool value " + std::to_string(b) + " is neither 0 nor 1");
        out.u = b;
        return;
      }
      case ValueType::String: out.str = r_.read_string("string value"); return;
      case ValueType::Array: return array(out, depth + 1);
    }
  }

  void array(Value& out, int depth) {
    if (depth > kMaxArrayDepth) r_.fail("arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels");
    uint32_t et = r_.read<uint32_t>("array element type");
    if (!valid_type(et)) r_.fail("array element type " + std::to_string(et) + " is not a GGUF type (0..12)");
    out.elem_type = static_cast<ValueType>(et);
    uint64_t at = r_.pos();
    out.count = r_.read<uint64_t>("array length");
    if (out.count > r_.remaining() / min_element_bytes(out.elem_type)) {
      r_.fail("array of " + std::to_string(out.count) + " " + value_type_name(out.elem_type) + " at byte " +
              std::to_string(at) + " cannot fit in the remaining " + std::to_string(r_.remaining()) + " bytes");
    }
    if (out.elem_type == ValueType::String) {
      out.strings.reserve(reserve_hint(out.count));
      for (uint64_t k = 0; k < out.count; ++k) out.strings.push_back(r_.read_string("array string"));
    } else if (out.elem_type == ValueType::Array) {
      nested_ += out.count;
      if (nested_ > kMaxNestedArrays) r_.fail("more than " + std::to_string(kMaxNestedArrays) + " nested arrays");
      out.arrays.resize(out.count);
      for (Value& v : out.arrays) value(ValueType::Array, v, depth);
    } else {
      out.packed = r_.here();
      r_.skip(out.count * value_type_size(out.elem_type), "array data");
      if (out.elem_type == ValueType::Bool) {
        for (uint64_t k = 0; k < out.count; ++k) {
          if (out.packed[k] > 1) r_.fail("bool array element " + std::to_string(k) + " is neither 0 nor 1");
        }
      }
    }
  }

  void alignment() {
    const Value* a = file_.find("general.alignment");
    if (!a) return;
    r_.context = "metadata key \"general.alignment\"";
    if (a->type != ValueType::UInt32) r_.fail(std::string("expected a uint32, found ") + value_type_name(a->type));
    if (a->u == 0 || (a->u & (a->u - 1)) != 0) r_.fail("alignment " + std::to_string(a->u) + " is not a power of two");
    file_.alignment = a->u;
    r_.context.clear();
  }

  void tensors() {
    file_.tensors.reserve(reserve_hint(tensor_count_));
    for (uint64_t k = 0; k < tensor_count_; ++k) {
      r_.context = "tensor #" + std::to_string(k);
      TensorInfo t;
      t.name = std::string(r_.read_string("name"));
      r_.context = "tensor " + quoted(t.name);
      uint32_t n_dims = r_.read<uint32_t>("n_dims");
      if (n_dims > kMaxDims) r_.fail("n_dims " + std::to_string(n_dims) + " exceeds " + std::to_string(kMaxDims));
      uint64_t elements = 1;
      bool overflow = false;
      for (uint32_t d = 0; d < n_dims; ++d) {
        uint64_t ne = r_.read<uint64_t>("ne");
        // ggml holds dimensions as int64_t.
        if (ne > uint64_t(std::numeric_limits<int64_t>::max())) {
          r_.fail("ne[" + std::to_string(d) + "] = " + std::to_string(ne) + " is negative as int64");
        }
        t.ne.push_back(ne);
        overflow = overflow || (ne != 0 && elements > std::numeric_limits<uint64_t>::max() / ne);
        elements *= ne;
      }
      t.ggml_type = r_.read<uint32_t>("type");
      ggml_type(t);
      t.offset = r_.read<uint64_t>("offset");
      const GgmlTypeInfo* info = ggml_type_info(t.ggml_type);
      if (overflow) r_.fail("element count overflows 64 bits (ne = " + dims(t.ne) + ")");
      if (!t.ne.empty() && t.ne[0] % info->block_size != 0) {
        r_.fail("ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of the " + info->name + " block size " +
                std::to_string(info->block_size));
      }
      uint64_t blocks = elements / info->block_size;
      if (blocks > std::numeric_limits<uint64_t>::max() / info->type_size) r_.fail("byte size overflows 64 bits");
      t.bytes = blocks * info->type_size;
      if (!file_.tensor_index.emplace(t.name, file_.tensors.size()).second) r_.fail("the tensor name appears twice");
      file_.tensors.push_back(std::move(t));
    }
    r_.context.clear();
  }

  void ggml_type(TensorInfo& t) {
    const GgmlTypeInfo* info = ggml_type_info(t.ggml_type);
    if (info && info->dtype) {
      t.dtype = *info->dtype;
      return;
    }
    std::string what = info ? std::string(info->name) + " (ggml type " + std::to_string(t.ggml_type) + ")"
                            : "ggml type " + std::to_string(t.ggml_type) + " (unknown)";
    throw ModelError(ModelErrc::Unsupported, file_.path + ": tensor " + quoted(t.name) + ": " + what +
                                                 " is not supported; this build reads F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K");
  }

  void data_section() {
    uint64_t end = r_.pos();
    uint64_t a = file_.alignment;
    if (end > std::numeric_limits<uint64_t>::max() - (a - 1)) r_.fail("data section offset overflows");
    file_.data_offset = (end + a - 1) / a * a;
    for (const TensorInfo& t : file_.tensors) {
      r_.context = "tensor " + quoted(t.name);
      if (t.offset % a != 0) {
        r_.fail("offset " + std::to_string(t.offset) + " is not a multiple of the alignment " + std::to_string(a));
      }
      uint64_t avail = file_.size >= file_.data_offset ? file_.size - file_.data_offset : 0;
      if (file_.data_offset > file_.size || t.offset > avail || t.bytes > avail - t.offset) {
        r_.fail("data at offset " + std::to_string(t.offset) + " (+" + std::to_string(t.bytes) +
                " bytes) runs past the end of the file: the data section holds " + std::to_string(avail) + " bytes");
      }
    }
    // Two tensors sharing bytes would make writes through one (none today, but quantized
    // repacking later) corrupt the other; no converter produces it.
    std::vector<size_t> order(file_.tensors.size());
    std::iota(order.begin(), order.end(), size_t{0});
    const auto& ts = file_.tensors;
    std::sort(order.begin(), order.end(), [&ts](size_t x, size_t y) { return ts[x].offset < ts[y].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
      const TensorInfo& prev = ts[order[k - 1]];
      const TensorInfo& cur = ts[order[k]];
      if (prev.bytes != 0 && prev.offset + prev.bytes > cur.offset) {
        r_.context = "tensor " + quoted(cur.name);
        r_.fail("data at offset " + std::to_string(cur.offset) + " overlaps tensor " + quoted(prev.name) +
                " at [" + std::to_string(prev.offset) + ", " + std::to_string(prev.offset + prev.bytes) + ")");
      }
    }
    r_.context.clear();
  }

  Reader r_;
  File file_;
  uint64_t tensor_count_ = 0;
  uint64_t kv_count_ = 0;
  uint64_t nested_ = 0;
};

}  // namespace

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UInt8: return "uint8";
    case ValueType::Int8: return "int8";
    case ValueType::UInt16: return "uint16";
    case ValueType::Int16: return "int16";
    case ValueType::UInt32: return "uint32";
    case ValueType::Int32: return "int32";
    case ValueType::Float32: return "float32";
    case ValueType::Bool: return "bool";
    case ValueType::String: return "string";
    case ValueType::Array: return "array";
    case ValueType::UInt64: return "uint64";
    case ValueType::Int64: return "int64";
    case ValueType::Float64: return "float64";
  }
  return "?";
}

uint64_t value_type_size(ValueType t) {
  switch (t) {
    case ValueType::UInt8: case ValueType::Int8: case ValueType::Bool: return 1;
    case ValueType::UInt16: case ValueType::Int16: return 2;
    case ValueType::UInt32: case ValueType::Int32: case ValueType::Float32: return 4;
    case ValueType::UInt64: case ValueType::Int64: case ValueType::Float64: return 8;
    case ValueType::String: case ValueType::Array: return 0;
  }
  return 0;
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::UInt8: case ValueType::Int8: case ValueType::UInt16: case ValueType::Int16:
    case ValueType::UInt32: case ValueType::Int32: case ValueType::UInt64: case ValueType::Int64:
      return true;
    default:
      return false;
  }
}

bool Value::is_float() const { return type == ValueType::Float32 || type == ValueType::Float64; }

std::optional<int64_t> Value::as_int() const {
  if (!is_integer()) return std::nullopt;
  bool is_unsigned = type == ValueType::UInt8 || type == ValueType::UInt16 || type == ValueType::UInt32 ||
                     type == ValueType::UInt64;
  if (!is_unsigned) return i;
  if (u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return int64_t(u);
}

std::optional<double> Value::as_number() const {
  if (is_float()) return f;
  if (!is_integer()) return std::nullopt;
  if (auto v = as_int()) return double(*v);
  return double(u);
}

Value Value::element(uint64_t k) const {
  Value v;
  v.type = elem_type;
  const uint8_t* p = packed + k * value_type_size(elem_type);
  auto load = [p](auto x) {
    std::memcpy(&x, p, sizeof x);
    return x;
  };
  switch (elem_type) {
    case ValueType::UInt8: case ValueType::Bool: v.u = load(uint8_t{}); break;
    case ValueType::Int8: v.i = load(int8_t{}); break;
    case ValueType::UInt16: v.u = load(uint16_t{}); break;
    case ValueType::Int16: v.i = load(int16_t{}); break;
    case ValueType::UInt32: v.u = load(uint32_t{}); break;
    case ValueType::Int32: v.i = load(int32_t{}); break;
    case ValueType::UInt64: v.u = load(uint64_t{}); break;
    case ValueType::Int64: v.i = load(int64_t{}); break;
    case ValueType::Float32: v.f = load(float{}); break;
    case ValueType::Float64: v.f = load(double{}); break;
    case ValueType::String: v.str = strings[k]; break;
    case ValueType::Array: return arrays[k];
  }
  return v;
}

const Value* File::find(std::string_view key) const {
  auto it = metadata_index.find(std::string(key));
  return it == metadata_index.end() ? nullptr : &metadata[it->second].second;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index.find(std::string(name));
  return it == tensor_index.end() ? nullptr : &tensors[it->second];
}

TensorView File::view(const TensorInfo& t) const {
  TensorView v;
  v.name = t.name;
  v.dtype = t.dtype;
  v.shape = t.shape();
  v.data = base + data_offset + t.offset;
  v.bytes = t.bytes;
  return v;
}

// llama.cpp and gguf-py write the tensors back to back from offset 0, each padded to the
// alignment. A region larger than its tensor's type and shape need means the type or shape is
// not what the bytes hold (BF16 declared over F32 data, a dimension too small) or something
// shifted the data; either way the values read would be garbage. Differences smaller than the
// alignment padding cannot be told from padding.
void check_data_layout(const File& f) {
  std::vector<const TensorInfo*> order;
  for (const TensorInfo& t : f.tensors) order.push_back(&t);
  if (order.empty()) return;
  std::sort(order.begin(), order.end(), [](const TensorInfo* x, const TensorInfo* y) { return x->offset < y->offset; });
  auto fail = [&f](const TensorInfo& t, const std::string& what) {
    throw ModelError(ModelErrc::Corrupt, f.path + ": tensor " + quoted(t.name) + ": " + what);
  };
  const uint64_t a = f.alignment;
  const uint64_t data_size = f.size - f.data_offset;  // parse() checked every tensor lies inside
  if (order.front()->offset != 0) {
    const uint64_t at = order.front()->offset;
    fail(*order.front(), "the first tensor's data starts at offset " + std::to_string(at) +
                             " of the data section, not 0: the " + std::to_string(at) +
                             " bytes before it belong to no tensor");
  }
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorInfo& t = *order[k];
    const uint64_t padded = (t.offset + t.bytes + a - 1) / a * a;
    const bool last = k + 1 == order.size();
    const uint64_t next = last ? data_size : order[k + 1]->offset;
    if (next <= padded) continue;
    fail(t, std::string(ggml_type_info(t.ggml_type)->name) + " of ne " + dims(t.ne) + " needs " +
                std::to_string(t.bytes) + " bytes, but its data region holds " + std::to_string(next - t.offset) +
                " bytes (offset " + std::to_string(t.offset) + " to " +
                (last ? std::string("the end of the file") : "tensor " + quoted(order[k + 1]->name)) + " at " +
                std::to_string(next) + ", alignment " + std::to_string(a) +
                "): the declared type or shape does not match the data");
  }
}

File parse(const uint8_t* data, uint64_t size, const std::string& path) {
  return Parser(data, size, path).run();
}

}  // namespace fineserve::model::gguf
