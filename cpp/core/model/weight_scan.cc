// The one pass over every weight byte that loading makes: NaN/Inf detection and progress.
// Reading the bytes also faults the mapping in, so the first forward pass does not pay for it.
#include <algorithm>
#include <cstring>
#include <string>

#include "model/json.h"
#include "model/loader_internal.h"
#include "model/model_error.h"
#include "quant/weight_traits.h"

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

// What the scan reads of a type: `unit_bytes` bytes hold `unit_elements` elements. The GGUF block
// types are finite exactly when their f16 block scales are (the quants are small integers and
// |d * sc * q| stays far below float's range), so only the scales their row of
// quant::WeightTypeTraits names are tested.
struct ScanUnit {
  uint64_t unit_bytes, unit_elements;
  const quant::WeightTypeTraits* type;
};

ScanUnit scan_unit(DType t) {
  const quant::WeightTypeTraits& type = quant::traits(t);
  // fineserve's formats (no block bytes) are made in memory from scanned weights: read bytewise.
  return type.block_bytes != 0 ? ScanUnit{type.block_bytes, type.block_size, &type} : ScanUnit{1, 1, &type};
}

// Index of the first unit among `n` at p that holds a NaN or Inf, or -1.
int64_t find_non_finite(DType t, const uint8_t* p, uint64_t n, bool* nan) {
  switch (t) {
    case DType::F32: return first_non_finite<uint32_t>(p, n, 0x7f800000u, 0x007fffffu, nan);
    case DType::F16: return first_non_finite<uint16_t>(p, n, 0x7c00u, 0x03ffu, nan);
    case DType::BF16: return first_non_finite<uint16_t>(p, n, 0x7f80u, 0x007fu, nan);
    default: break;
  }
  const ScanUnit u = scan_unit(t);
  for (uint64_t k = 0; k < n; ++k) {
    for (uint32_t s = 0; s < u.type->finite_scale_count; ++s) {
      uint16_t h;
      std::memcpy(&h, p + k * u.unit_bytes + u.type->finite_scales[s], 2);
      if ((h & 0x7c00u) == 0x7c00u) {
        *nan = (h & 0x03ffu) != 0;
        return int64_t(k);
      }
    }
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
    const ScanUnit unit = scan_unit(t->dtype);
    const uint64_t width = unit.unit_bytes;
    // Without the scan there is nothing to do between tensors but report.
    const uint64_t step = options.check_finite ? kChunkBytes / width * width : std::max<uint64_t>(t->bytes, 1);
    for (uint64_t at = 0; at < t->bytes; at += step) {
      uint64_t len = std::min(step, t->bytes - at);
      if (options.check_finite) {
        bool nan = false;
        int64_t k = find_non_finite(t->dtype, t->data + at, len / width, &nan);
        if (k >= 0) {
          uint64_t element = (at / width + uint64_t(k)) * unit.unit_elements;
          auto it = index.find(t->name);
          std::string file = it != index.end() ? it->second.file : source;
          std::string name;
          json::append_quoted(name, t->name);
          std::string where = (unit.unit_elements > 1 ? "the scale of the block at element " : "element ") +
                              std::to_string(element);
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
