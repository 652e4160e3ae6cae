#include "quant/weight_format.h"

#include "quant/weight_traits.h"

namespace fineserve::quant {

using model::DType;

uint32_t block_elements(DType t) { return traits(t).block_size; }

uint64_t row_data_offset(DType t, uint64_t cols, uint32_t group) { return traits(t).data_offset(cols, group); }

uint64_t row_bytes(DType t, uint64_t cols, uint32_t group) { return traits(t).row_bytes(cols, group); }

std::string row_layout_error(DType t, uint64_t cols, uint32_t group) {
  const WeightTypeTraits& row = traits(t);
  const std::string name = row.name;
  if (cols == 0) return name + " needs a row length of at least 1, got 0";
  const uint32_t block = row.block_size;
  if (cols % block != 0) {
    return name + " needs a row length that is a multiple of " + std::to_string(block) + ", got " +
           std::to_string(cols);
  }
  if (row.grouped && (group == 0 || group % 32 != 0)) {
    return name + " needs a group size that is a positive multiple of 32, got " + std::to_string(group);
  }
  return "";
}

}  // namespace fineserve::quant
