// libFuzzer target for the KvPool API: the input bytes are decoded into a sequence of pool calls
// (add/remove models, alloc, free, live tokens, compact, and deliberately invalid calls) on one of the four
// policies (byte 0 picks it), with the reference model of test/cpp/kv_pool_harness.h checking every
// invariant after every call. A violated invariant traps (so libFuzzer records the input); a
// KvError is only acceptable where the harness expects one, and anything else thrown is a bug.
//
// Built by CMake with -DFINESERVE_FUZZ=ON (clang only) and run by scripts/fuzz.mjs.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "kv_pool_harness.h"

using namespace fineserve::kv;
using namespace fineserve::kv::testing;

namespace {

// Choices from the fuzzer's bytes: each below() consumes as few bytes as its bound needs, so
// mutations of one byte change one decision. Past the end it returns 0 and reports exhaustion.
class ByteSource {
 public:
  ByteSource(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint64_t below(uint64_t bound) {
    if (bound <= 1) return 0;
    int bytes = bound <= 0x100 ? 1 : bound <= 0x10000 ? 2 : bound <= 0x100000000ull ? 4 : 8;
    uint64_t v = 0;
    for (int k = 0; k < bytes; ++k) {
      if (pos_ >= size_) {
        exhausted_ = true;
        return 0;
      }
      v = (v << 8) | data_[pos_++];
    }
    return v % bound;
  }
  bool exhausted() const { return exhausted_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  bool exhausted_ = false;
};

[[noreturn]] void trap(const std::string& message) {
  std::fprintf(stderr, "kv_pool_fuzz: invariant violated: %s\n", message.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // Byte 0 picks the policy (low two bits) and the pool size (small pools reach out-of-memory
  // within a few ops); the rest is the op stream. One policy per input keeps each run cheap and
  // ties the coverage it finds to that policy; a one-byte mutation replays the ops on another.
  const char* policy = kPolicies[data[0] % 4];
  const uint64_t pool_bytes = kPoolSizes[(data[0] / 4) % (sizeof(kPoolSizes) / sizeof(kPoolSizes[0]))];
  try {
    PoolHarness h(pool_config(policy, pool_bytes), trap);
    ByteSource ops(data + 1, size - 1);
    run_random_ops(h, ops, 4096);
    h.check_deep();
    // Drain with fixed choices: the input is spent, and emptying must work from any state.
    SplitMix rng(size);
    drain(h, rng);
  } catch (const std::exception& e) {
    trap(std::string(policy) + ": unexpected exception escaped: " + e.what());
  }
  return 0;
}
