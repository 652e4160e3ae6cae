#include "model/tensor.h"

namespace fineserve::model {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_0: return "Q4_0";
    case DType::Q4_K: return "Q4_K";
    case DType::Q6_K: return "Q6_K";
    case DType::W8A8: return "W8A8";
    case DType::FP8: return "FP8";
    case DType::W4A16: return "W4A16";
    case DType::W4A8: return "W4A8";
  }
  return "?";
}

uint64_t dtype_bytes(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    default: return 0;
  }
}

bool is_quantized(DType t) { return dtype_bytes(t) == 0; }

}  // namespace fineserve::model
