// The ggml tensor types a GGUF file may name, in one table: id, name, block geometry, and the
// DType this build reads them as (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K; the byte layouts of the
// block types are in quant/weight_format.h).
#pragma once

#include <cstdint>
#include <optional>

#include "model/tensor.h"

namespace fineserve::model {

struct GgmlTypeInfo {
  uint32_t id;
  const char* name;          // as llama.cpp spells it: "F32", "Q4_K", ...
  uint32_t block_size;       // elements per block (1 for plain types); 0 for retired ids
  uint32_t type_size;        // bytes per block
  std::optional<DType> dtype;  // set when this build can use the type
};

// nullptr for an id no ggml version has used.
const GgmlTypeInfo* ggml_type_info(uint32_t id);

// The ggml type a DType is stored as in a GGUF file (the row of the table above that reads as
// it); nullptr for fineserve's in-memory formats, which have none.
const GgmlTypeInfo* ggml_type_of(DType t);

}  // namespace fineserve::model
