#include "model/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace fineserve::model {
namespace {

const char* st_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    default: break;  // safetensors has no quantized types fineserve reads
  }
  throw std::invalid_argument(std::string("safetensors writer: cannot write ") + dtype_name(t));
}

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

void write_text(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error(path + ": cannot create: " + std::strerror(errno));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw std::runtime_error(path + ": write failed: " + std::strerror(errno));
}

}  // namespace

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

SafetensorsWriter::SafetensorsWriter(std::string folder, uint64_t max_shard_bytes)
    : TensorStream("safetensors writer"), folder_(std::move(folder)), max_shard_bytes_(max_shard_bytes) {
  metadata_["format"] = "pt";
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (finished_ || !begun_) return;
  for (const Shard& s : shards_) std::remove((folder_ + "/" + s.file + ".part").c_str());
}

void SafetensorsWriter::add_metadata(const std::string& key, const std::string& value) {
  if (begun_) throw std::logic_error("safetensors writer: metadata added after begin_data()");
  metadata_[key] = value;
}

void SafetensorsWriter::add_tensor(const std::string& name, DType type, const std::vector<uint64_t>& shape) {
  if (begun_) throw std::logic_error("safetensors writer: tensor \"" + name + "\" declared after begin_data()");
  if (name == "__metadata__") throw std::invalid_argument("safetensors writer: reserved tensor name");
  declare(name, type, shape);
}

std::string SafetensorsWriter::header_json(const Shard& shard) const {
  std::string j = "{\"__metadata__\":{";
  bool first = true;
  for (const auto& [k, v] : metadata_) {
    j += (first ? "" : ",") + json_quote(k) + ":" + json_quote(v);
    first = false;
  }
  j += "}";
  for (size_t i : shard.tensors) {
    const Tensor& t = tensors_[i];
    j += "," + json_quote(t.name) + ":{\"dtype\":\"" + st_dtype(t.type) + "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) j += (d ? "," : "") + std::to_string(t.shape[d]);
    j += "],\"data_offsets\":[" + std::to_string(t.offset) + "," + std::to_string(t.offset + t.bytes) + "]}";
  }
  j += "}";
  // The data that follows starts 8-aligned, as the format recommends.
  j.append((8 - j.size() % 8) % 8, ' ');
  return j;
}

void SafetensorsWriter::begin_data() {
  if (begun_) throw std::logic_error("safetensors writer: begin_data() called twice");
  std::filesystem::create_directories(folder_);
  shards_.clear();
  shards_.emplace_back();
  shard_of_.resize(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    Tensor& t = tensors_[i];
    Shard* s = &shards_.back();
    if (max_shard_bytes_ > 0 && !s->tensors.empty() && s->data_bytes + t.bytes > max_shard_bytes_) {
      shards_.emplace_back();
      s = &shards_.back();
    }
    shard_of_[i] = shards_.size() - 1;
    t.offset = s->data_bytes;
    s->data_bytes += t.bytes;
    s->tensors.push_back(i);
  }
  file_bytes_ = 0;
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& s = shards_[i];
    s.file = shards_.size() == 1 ? "model.safetensors" : shard_name(i, shards_.size());
    s.header_bytes = 8 + header_json(s).size();
    file_bytes_ += s.header_bytes + s.data_bytes;
  }
  begun_ = true;
  start_data();
}

void SafetensorsWriter::open_shard(size_t index) {
  close_shard();
  const Shard& s = shards_[index];
  std::string part = folder_ + "/" + s.file + ".part";
  file_ = std::fopen(part.c_str(), "wb");
  if (file_ == nullptr) throw std::runtime_error(part + ": cannot create: " + std::strerror(errno));
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
  open_ = index;
  std::string json = header_json(s);
  uint64_t n = json.size();
  emit(&n, 8);
  emit(json.data(), json.size());
}

void SafetensorsWriter::close_shard() {
  if (file_ == nullptr) return;
  std::string part = folder_ + "/" + shards_[open_].file + ".part";
  int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) throw std::runtime_error(part + ": close failed: " + std::strerror(errno));
}

void SafetensorsWriter::emit(const void* p, uint64_t n) {
  if (n > 0 && std::fwrite(p, 1, n, file_) != n) {
    throw std::runtime_error(folder_ + "/" + shards_[open_].file + ".part: write failed: " + std::strerror(errno));
  }
}

// A shard is opened once one of its tensors is next to receive data; one whose tensors are all
// empty never is, and finish() writes it whole.
void SafetensorsWriter::on_next_tensor(size_t index) {
  if (index < tensors_.size() && shard_of_[index] != open_) open_shard(shard_of_[index]);
}

void SafetensorsWriter::finish() {
  if (!begun_) begin_data();
  if (finished_) return;
  check_complete();
  close_shard();
  // A shard whose tensors are all empty (or a model with no tensors) was never opened.
  for (const Shard& s : shards_) {
    std::string part = folder_ + "/" + s.file + ".part";
    if (!std::filesystem::exists(part)) {
      std::string json = header_json(s);
      uint64_t n = json.size();
      write_text(part, std::string(reinterpret_cast<const char*>(&n), 8) + json);
    }
  }
  for (const Shard& s : shards_) {
    std::string part = folder_ + "/" + s.file + ".part";
    std::filesystem::rename(part, folder_ + "/" + s.file);
  }
  remove_stale_weights();
  if (shards_.size() > 1) {
    uint64_t total = 0;
    for (const Tensor& t : tensors_) total += t.bytes;
    std::string j = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) + "},\n  \"weight_map\": {";
    for (size_t i = 0; i < tensors_.size(); ++i) {
      j += (i ? ",\n    " : "\n    ") + json_quote(tensors_[i].name) + ": " + json_quote(shards_[shard_of_[i]].file);
    }
    j += "\n  }\n}\n";
    write_text(folder_ + "/model.safetensors.index.json", j);
    file_bytes_ += j.size();
  }
  finished_ = true;
}

// A folder that held another model keeps its config.json only if it is rewritten; weights of the
// old one (other shard counts, a stale index) would be mixed with the new by a reader.
void SafetensorsWriter::remove_stale_weights() const {
  std::vector<std::string> keep = files();
  for (const auto& entry : std::filesystem::directory_iterator(folder_)) {
    std::string name = entry.path().filename().string();
    bool weights = name == "model.safetensors" || name == "model.safetensors.index.json" ||
                   (name.size() == 32 && name.rfind("model-", 0) == 0 && name.compare(11, 4, "-of-") == 0 &&
                    name.compare(20, 12, ".safetensors") == 0);
    if (weights && std::find(keep.begin(), keep.end(), name) == keep.end()) std::filesystem::remove(entry.path());
  }
}

std::vector<std::string> SafetensorsWriter::files() const {
  std::vector<std::string> out;
  for (const Shard& s : shards_) out.push_back(s.file);
  return out;
}

}  // namespace fineserve::model
