// Helpers for the model parser and loader tests: byte builders for small GGUF and safetensors
// files (built by hand so a test can write exactly the malformed field it is about), byte
// patching, temp folders, and the stories260K fixture's location.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "model/model_error.h"

namespace fineserve::model::testing {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// ../shared/fixtures/stories260K next to the repository (the project's test data lives outside it),
// or under $FINESERVE_SHARED: a GPU host runs the test binaries built here from another folder.
inline fs::path fixture_dir() {
  if (const char* shared = std::getenv("FINESERVE_SHARED"); shared != nullptr && *shared != '\0') {
    return (fs::path(shared) / "fixtures" / "stories260K").lexically_normal();
  }
  fs::path dir = fs::path(__FILE__).parent_path() / ".." / ".." / ".." / "shared" / "fixtures" / "stories260K";
  return dir.lexically_normal();
}

inline fs::path require_fixture(const std::string& name) {
  fs::path p = fixture_dir() / name;
  INFO("the stories260K fixture is expected at " << p.string());
  REQUIRE_MESSAGE(fs::exists(p), "missing fixture: " << p.string());
  return p;
}

inline Bytes read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const fs::path& p, const Bytes& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  REQUIRE(f.good());
}

// A fresh folder under the system temp dir, removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("fineserve-model-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path operator/(const std::string& name) const { return path / name; }
};

template <class T>
void put(Bytes& out, T v) {
  // resize + memcpy rather than insert of a local array: GCC 12 warns falsely about the latter.
  size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}
inline void put_str(Bytes& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}
template <class T>
void poke(Bytes& b, size_t at, T v) {
  REQUIRE(at + sizeof(T) <= b.size());
  std::memcpy(b.data() + at, &v, sizeof(T));
}
template <class T>
T peek(const Bytes& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}

// Offset just past a GGUF string (u64 length + bytes) equal to `s`: where a key's type or a
// tensor's n_dims starts.
inline size_t after_gguf_string(const Bytes& b, const std::string& s) {
  Bytes needle;
  put_str(needle, s);
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  REQUIRE_MESSAGE(it != b.end(), "string not found in file: " << s);
  return size_t(it - b.begin()) + needle.size();
}

// A GGUF file built field by field. Values are appended raw, so a test can write any type.
struct GgufBuilder {
  uint32_t version = 3;
  uint64_t alignment = 32;
  Bytes kv, infos, data;
  uint64_t kv_count = 0, tensor_count = 0;

  void key(const std::string& k, uint32_t type) {
    put_str(kv, k);
    put<uint32_t>(kv, type);
    ++kv_count;
  }
  void u32(const std::string& k, uint32_t v) {
    key(k, 4);
    put(kv, v);
  }
  void f32(const std::string& k, float v) {
    key(k, 6);
    put(kv, v);
  }
  void str(const std::string& k, const std::string& v) {
    key(k, 8);
    put_str(kv, v);
  }
  void strings(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9);
    put<uint32_t>(kv, 8);
    put<uint64_t>(kv, v.size());
    for (const auto& s : v) put_str(kv, s);
  }
  // A tensor of `type` with ne (fastest first) and raw data, placed at the next aligned offset.
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, const Bytes& bytes) {
    while (data.size() % alignment) data.push_back(0);
    put_str(infos, name);
    put<uint32_t>(infos, uint32_t(ne.size()));
    for (uint64_t n : ne) put(infos, n);
    put<uint32_t>(infos, type);
    put<uint64_t>(infos, data.size());
    data.insert(data.end(), bytes.begin(), bytes.end());
    ++tensor_count;
  }
  void f32_tensor(const std::string& name, std::vector<uint64_t> ne, float fill = 0.5f) {
    uint64_t n = 1;
    for (uint64_t d : ne) n *= d;
    Bytes b;
    for (uint64_t k = 0; k < n; ++k) put(b, fill);
    tensor(name, std::move(ne), 0, b);
  }
  Bytes build() const {
    Bytes out = {'G', 'G', 'U', 'F'};
    put(out, version);
    put(out, tensor_count);
    put(out, kv_count);
    out.insert(out.end(), kv.begin(), kv.end());
    out.insert(out.end(), infos.begin(), infos.end());
    while (out.size() % alignment) out.push_back(0);
    out.insert(out.end(), data.begin(), data.end());
    return out;
  }
};

// A safetensors file from a header text and data bytes.
inline Bytes safetensors_bytes(const std::string& header, const Bytes& data) {
  Bytes out;
  put<uint64_t>(out, header.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// Runs `f`, which must throw ModelError with `code` and a message containing every one of
// `parts`; returns the message.
template <class F>
std::string expect_error(F&& f, ModelErrc code, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const ModelError& e) {
    std::string msg = e.what();
    INFO("message: " << msg);
    CHECK_MESSAGE(e.code() == code, "code " << errc_code(e.code()) << ", expected " << errc_code(code));
    for (const std::string& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "message lacks \"" << p << "\"");
    return msg;
  }
  FAIL("no ModelError thrown; expected " << errc_code(code));
  return "";
}

}  // namespace fineserve::model::testing
