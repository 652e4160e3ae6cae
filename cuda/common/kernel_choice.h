// A switch between two versions of a kernel, for A/B runs in one process: 0 leaves the choice to
// the caller's rule, 1 or 2 force a version. An environment variable forces one for a whole run
// ("<first>" or "1", "<second>" or "2"; read once, at start-up, so kernel calls cost no getenv);
// set() overrides it, for tests and benchmarks.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fineserve::gpu {

class KernelChoice {
 public:
  KernelChoice(const char* env, const char* first, const char* second) : env_(parse(std::getenv(env), first, second)) {}

  // The forced version (1 or 2), or 0 when nothing forces one.
  int forced() const {
    const int v = set_.load();
    return v > 0 ? v : env_;
  }

  // 1 or 2 force a version, 0 goes back to the environment's choice; `what` names the caller in
  // the error for any other value.
  void set(int version, const char* what) {
    if (version < 0 || version > 2) throw std::invalid_argument(std::string(what) + ": 0, 1 or 2");
    set_.store(version);
  }

 private:
  static int parse(const char* e, const char* first, const char* second) {
    if (e == nullptr) return 0;
    if (std::strcmp(e, first) == 0 || std::strcmp(e, "1") == 0) return 1;
    if (std::strcmp(e, second) == 0 || std::strcmp(e, "2") == 0) return 2;
    return 0;
  }

  const int env_;
  std::atomic<int> set_{0};
};

}  // namespace fineserve::gpu
