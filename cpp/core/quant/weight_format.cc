#include "quant/weight_format.h"

namespace fineserve::quant {

using model::DType;

uint32_t block_elements(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0: return 32;
    case DType::Q4_K:
    case DType::Q6_K: return 256;
    default: return 1;
  }
}

static uint64_t block_bytes(DType t) {
  switch (t) {
    case DType::Q8_0: return 34;
    case DType::Q4_0: return 18;
    case DType::Q4_K: return 144;
    case DType::Q6_K: return 210;
    default: return 0;
  }
}

uint64_t row_data_offset(DType t, uint64_t cols, uint32_t group) {
  switch (t) {
    case DType::W8A8:
    case DType::FP8: return kRowAlign;
    case DType::W4A16: return round_up(4 * groups_in_row(cols, group), kRowAlign);
    case DType::W4A8: return round_up(4 + groups_in_row(cols, group), kRowAlign);
    default: return 0;
  }
}

uint64_t row_bytes(DType t, uint64_t cols, uint32_t group) {
  switch (t) {
    case DType::F32: return 4 * cols;
    case DType::F16:
    case DType::BF16: return 2 * cols;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: return cols / block_elements(t) * block_bytes(t);
    case DType::W8A8:
    case DType::FP8: return round_up(kRowAlign + cols, kRowAlign);
    case DType::W4A16:
    case DType::W4A8: return row_data_offset(t, cols, group) + 16 * ((cols + 31) / 32);
  }
  return 0;
}

std::string row_layout_error(DType t, uint64_t cols, uint32_t group) {
  const std::string name = model::dtype_name(t);
  if (cols == 0) return name + " needs a row length of at least 1, got 0";
  const uint32_t block = block_elements(t);
  if (cols % block != 0) {
    return name + " needs a row length that is a multiple of " + std::to_string(block) + ", got " +
           std::to_string(cols);
  }
  if ((t == DType::W4A16 || t == DType::W4A8) && (group == 0 || group % 32 != 0)) {
    return name + " needs a group size that is a positive multiple of 32, got " + std::to_string(group);
  }
  return "";
}

}  // namespace fineserve::quant
