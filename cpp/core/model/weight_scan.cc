// The one pass over every weight byte that loading makes: NaN/Inf detection and progress.
// Reading the bytes also faults the mapping in, so the first forward pass does not pay for it.
#include <algorithm>
#include <cstring>
#include <string>

#include "model/json.h"
#include "model/loader_internal.h"
#include "model/model_error.h"

namespace fineserve::model::detail {

namespace {

// Progress is reported at least this often, so cancelling a multi-GB embedding is prompt.
constexpr uint64_t kChunkBytes = 64ull << 20;

// An IEEE value is NaN or Inf exactly when its exponent bits are all ones; testing the bits
// needs no float conversion (BF16/F16 have none on plain x86-64) and vectorizes. Returns the
// index of the first such element among `n` at p, or -1; *nan tells NaN from Inf.
template <class Bits>
int64_t first_non_finite(const uint8_t* p, uint64_t n, Bits exponent, Bits mantissa, bool* nan) {
  constexpr uint64_t kBlock = 1024;
  auto load = [p](uint64_t k) {
    Bits v;
    std::memcpy(&v, p + k * sizeof(Bits), sizeof(Bits));
    return v;
  };
  for (uint64_t start = 0; start < n; start += kBlock) {
    uint64_t end = std::min(n, start + kBlock);
    bool bad = false;
    for (uint64_t k = start; k < end; ++k) bad |= (load(k) & exponent) == exponent;
    if (!bad) continue;
    for (uint64_t k = start; k < end; ++k) {
      Bits v = load(k);
      if ((v & exponent) == exponent) {
        *nan = (v & mantissa) != 0;
        return int64_t(k);
      }
    }
  }
  return -1;
}

int64_t find_non_finite(DType t, const uint8_t* p, uint64_t n, bool* nan) {
  switch (t) {
    case DType::F32: return first_non_finite<uint32_t>(p, n, 0x7f800000u, 0x007fffffu, nan);
    case DType::F16: return first_non_finite<uint16_t>(p, n, 0x7c00u, 0x03ffu, nan);
    case DType::BF16: return first_non_finite<uint16_t>(p, n, 0x7f80u, 0x007fu, nan);
  }
  return -1;
}

}  // namespace

void scan_weights(const LlamaWeights& weights, const TensorIndex& index, const LoadOptions& options,
                  const std::string& source) {
  std::vector<const TensorView*> tensors = distinct_tensors(weights);
  uint64_t total = 0;
  for (const TensorView* t : tensors) total += t->bytes;
  uint64_t done = 0;
  auto report = [&] {
    if (options.on_progress && !options.on_progress(total ? double(done) / double(total) : 1.0)) {
      throw ModelError(ModelErrc::Cancelled, source + ": loading cancelled by the progress callback");
    }
  };

  for (const TensorView* t : tensors) {
    const uint64_t width = dtype_bytes(t->dtype);
    // Without the scan there is nothing to do between tensors but report.
    const uint64_t step = options.check_finite ? kChunkBytes : std::max<uint64_t>(t->bytes, 1);
    for (uint64_t at = 0; at < t->bytes; at += step) {
      uint64_t len = std::min(step, t->bytes - at);
      if (options.check_finite) {
        bool nan = false;
        int64_t k = find_non_finite(t->dtype, t->data + at, len / width, &nan);
        if (k >= 0) {
          uint64_t element = at / width + uint64_t(k);
          auto it = index.find(t->name);
          std::string file = it != index.end() ? it->second.file : source;
          std::string name;
          json::append_quoted(name, t->name);
          std::string where = "element " + std::to_string(element);
          if (t->shape.size() == 2) {
            where += " (row " + std::to_string(element / t->cols()) + ", column " +
                     std::to_string(element % t->cols()) + ")";
          }
          throw ModelError(ModelErrc::BadWeights,
                           file + ": tensor " + name + ": " + where + " is " + (nan ? "NaN" : "Inf"));
        }
      }
      done += len;
      report();
    }
  }
  if (tensors.empty() || total == 0) report();
}

}  // namespace fineserve::model::detail
