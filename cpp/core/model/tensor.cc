#include "model/tensor.h"

#include "quant/weight_traits.h"

namespace fineserve::model {

const char* dtype_name(DType t) { return quant::traits(t).name; }

uint64_t dtype_bytes(DType t) { return quant::traits(t).element_bytes(); }

bool is_quantized(DType t) { return dtype_bytes(t) == 0; }

}  // namespace fineserve::model
