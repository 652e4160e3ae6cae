// The ggml tensor types a GGUF file may name, in one table: id, name, block geometry, and the
// DType this build reads them as (none yet for the quantized block formats; the quantization
// work fills those in here and nowhere else).
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

}  // namespace fineserve::model
