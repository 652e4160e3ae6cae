#include "model/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "model/ggml_type.h"

namespace fineserve::model {
namespace {

// GGUF value types, as the format defines them (ggml tensor types: model/ggml_type.h).
enum : uint32_t {
  kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9, kU64 = 10,
};

uint32_t ggml_type(const std::string& tensor, DType t) {
  if (const GgmlTypeInfo* info = ggml_type_of(t)) return info->id;
  // fineserve's in-memory formats have no ggml type
  throw std::invalid_argument("gguf writer: tensor \"" + tensor + "\": " + dtype_name(t) + " is not a GGUF tensor type");
}

uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

GgufWriter::GgufWriter(std::string path, uint32_t alignment, AlignmentKey key)
    : TensorStream("gguf writer"),
      path_(std::move(path)),
      part_path_(path_ + ".part"),
      alignment_(alignment),
      alignment_key_(key) {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    throw std::invalid_argument("gguf writer: alignment must be a power of two, got " + std::to_string(alignment));
  }
}

GgufWriter::~GgufWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!finished_ && begun_) std::remove(part_path_.c_str());
}

void GgufWriter::put(const void* p, size_t n, std::vector<uint8_t>& out) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

void GgufWriter::put_string(std::string_view s, std::vector<uint8_t>& out) {
  uint64_t n = s.size();
  put(&n, 8, out);
  put(s.data(), s.size(), out);
}

void GgufWriter::add_key(const std::string& key, uint32_t type) {
  if (begun_) throw std::logic_error("gguf writer: metadata \"" + key + "\" added after begin_data()");
  for (const std::string& k : keys_) {
    if (k == key) throw std::invalid_argument("gguf writer: metadata key \"" + key + "\" added twice");
  }
  keys_.push_back(key);
  put_string(key, metadata_);
  put(&type, 4, metadata_);
  ++metadata_count_;
}

void GgufWriter::add_u32(const std::string& key, uint32_t v) { add_key(key, kU32); put(&v, 4, metadata_); }
void GgufWriter::add_i32(const std::string& key, int32_t v) { add_key(key, kI32); put(&v, 4, metadata_); }
void GgufWriter::add_u64(const std::string& key, uint64_t v) { add_key(key, kU64); put(&v, 8, metadata_); }
void GgufWriter::add_f32(const std::string& key, float v) { add_key(key, kF32); put(&v, 4, metadata_); }

void GgufWriter::add_bool(const std::string& key, bool v) {
  add_key(key, kBool);
  uint8_t b = v ? 1 : 0;
  put(&b, 1, metadata_);
}

void GgufWriter::add_string(const std::string& key, const std::string& v) {
  add_key(key, kString);
  put_string(v, metadata_);
}

void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  add_key(key, kArray);
  uint32_t type = kString;
  uint64_t n = values.size();
  put(&type, 4, metadata_);
  put(&n, 8, metadata_);
  for (const std::string& s : values) put_string(s, metadata_);
}

// Arrays of 4-byte scalars differ only in their element type id.
#define FINESERVE_GGUF_ARRAY(fn, T, id)                                         \
  void GgufWriter::fn(const std::string& key, const std::vector<T>& values) {   \
    add_key(key, kArray);                                                       \
    uint32_t type = id;                                                         \
    uint64_t n = values.size();                                                 \
    put(&type, 4, metadata_);                                                   \
    put(&n, 8, metadata_);                                                      \
    put(values.data(), values.size() * sizeof(T), metadata_);                   \
  }
FINESERVE_GGUF_ARRAY(add_i32_array, int32_t, kI32)
FINESERVE_GGUF_ARRAY(add_u32_array, uint32_t, kU32)
FINESERVE_GGUF_ARRAY(add_f32_array, float, kF32)
#undef FINESERVE_GGUF_ARRAY

// Scalars were widened by the parser (u / i / f); narrowing them back to the stored width is exact.
void GgufWriter::put_value(const gguf::Value& v, std::vector<uint8_t>& out) {
  using gguf::ValueType;
  auto narrow = [&](auto x) { put(&x, sizeof x, out); };
  switch (v.type) {
    case ValueType::UInt8: return narrow(static_cast<uint8_t>(v.u));
    case ValueType::Int8: return narrow(static_cast<int8_t>(v.i));
    case ValueType::UInt16: return narrow(static_cast<uint16_t>(v.u));
    case ValueType::Int16: return narrow(static_cast<int16_t>(v.i));
    case ValueType::UInt32: return narrow(static_cast<uint32_t>(v.u));
    case ValueType::Int32: return narrow(static_cast<int32_t>(v.i));
    case ValueType::Float32: return narrow(static_cast<float>(v.f));
    case ValueType::Bool: return narrow(static_cast<uint8_t>(v.u));
    case ValueType::String: return put_string(v.str, out);
    case ValueType::UInt64: return narrow(v.u);
    case ValueType::Int64: return narrow(v.i);
    case ValueType::Float64: return narrow(v.f);
    case ValueType::Array: break;
  }
  uint32_t elem = static_cast<uint32_t>(v.elem_type);
  put(&elem, 4, out);
  put(&v.count, 8, out);
  if (v.elem_type == ValueType::String) {
    for (std::string_view s : v.strings) put_string(s, out);
  } else if (v.elem_type == ValueType::Array) {
    for (const gguf::Value& a : v.arrays) put_value(a, out);
  } else {
    put(v.packed, v.count * gguf::value_type_size(v.elem_type), out);
  }
}

void GgufWriter::add_value(const std::string& key, const gguf::Value& value) {
  add_key(key, static_cast<uint32_t>(value.type));
  put_value(value, metadata_);
}

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<uint64_t>& shape) {
  if (begun_) throw std::logic_error("gguf writer: tensor \"" + name + "\" declared after begin_data()");
  if (shape.empty() || shape.size() > 4) {
    throw std::invalid_argument("gguf writer: tensor \"" + name + "\" needs 1 to 4 dimensions");
  }
  declare(name, type, shape);
}

void GgufWriter::emit(const void* p, uint64_t n) {
  if (n == 0) return;
  if (std::fwrite(p, 1, n, file_) != n) {
    throw std::runtime_error(part_path_ + ": write failed: " + std::strerror(errno));
  }
  position_ += n;
}

void GgufWriter::pad_to(uint64_t position) {
  static const uint8_t zeros[256] = {};
  while (position_ < position) emit(zeros, std::min<uint64_t>(sizeof zeros, position - position_));
}

void GgufWriter::begin_data() {
  if (begun_) throw std::logic_error("gguf writer: begin_data() called twice");
  bool has_alignment = false;
  for (const std::string& k : keys_) has_alignment |= (k == "general.alignment");
  if (!has_alignment && (alignment_key_ == AlignmentKey::Always || alignment_ != 32)) {
    add_u32("general.alignment", alignment_);
  }

  std::vector<uint8_t> header;
  const char magic[4] = {'G', 'G', 'U', 'F'};
  uint32_t version = 3;
  uint64_t n_tensors = tensors_.size();
  put(magic, 4, header);
  put(&version, 4, header);
  put(&n_tensors, 8, header);
  put(&metadata_count_, 8, header);
  header.insert(header.end(), metadata_.begin(), metadata_.end());

  uint64_t offset = 0;
  for (Tensor& t : tensors_) {
    t.offset = offset;
    offset = round_up(offset + t.bytes, alignment_);
    put_string(t.name, header);
    uint32_t n_dims = static_cast<uint32_t>(t.shape.size());
    put(&n_dims, 4, header);
    for (size_t i = t.shape.size(); i-- > 0;) put(&t.shape[i], 8, header);  // ne[0] fastest
    uint32_t type = ggml_type(t.name, t.type);
    put(&type, 4, header);
    put(&t.offset, 8, header);
  }
  data_start_ = round_up(header.size(), alignment_);
  file_bytes_ = data_start_ + offset;

  begun_ = true;
  file_ = std::fopen(part_path_.c_str(), "wb");
  if (file_ == nullptr) throw std::runtime_error(part_path_ + ": cannot create: " + std::strerror(errno));
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
  emit(header.data(), header.size());
  pad_to(data_start_);
  metadata_.clear();
  metadata_.shrink_to_fit();
  start_data();
}

// Each tensor's data starts aligned: the gap after the one before is zeros.
void GgufWriter::on_next_tensor(size_t index) {
  pad_to(index < tensors_.size() ? data_start_ + tensors_[index].offset : file_bytes_);
}

void GgufWriter::finish() {
  if (!begun_) begin_data();
  if (finished_) return;
  check_complete();
  int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) throw std::runtime_error(part_path_ + ": close failed: " + std::strerror(errno));
  if (std::rename(part_path_.c_str(), path_.c_str()) != 0) {
    throw std::runtime_error(path_ + ": cannot rename from " + part_path_ + ": " + std::strerror(errno));
  }
  finished_ = true;
}

}  // namespace fineserve::model
