// Typed errors of the executor's bookkeeping (sequence table, backend choice), which the addon maps
// to the JS error codes errc_code() names.
#pragma once

#include <stdexcept>
#include <string>

namespace fineserve::engine {

enum class ExecutorErrc {
  SequenceExists,      // addSequence with an id already in the table
  SequenceUnknown,     // a sampling chunk of a sequence that was never added (or was removed)
  SamplingInvalid,     // sampling parameters out of range
  BatchInvalid,        // step arrays that disagree with each other
  BackendUnavailable,  // KV memory on a device this build has no backend for
};

class ExecutorError : public std::runtime_error {
 public:
  ExecutorError(ExecutorErrc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExecutorErrc code() const { return code_; }

 private:
  ExecutorErrc code_;
};

// The JS error code: ERR_SAMPLING_INVALID for bad sampling parameters, ERR_EXECUTOR_INVALID else.
inline const char* errc_code(ExecutorErrc code) {
  return code == ExecutorErrc::SamplingInvalid ? "ERR_SAMPLING_INVALID" : "ERR_EXECUTOR_INVALID";
}

}  // namespace fineserve::engine
