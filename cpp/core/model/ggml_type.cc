#include "model/ggml_type.h"

#include <iterator>

namespace fineserve::model {

namespace {

// Block sizes from ggml's type_traits (ggml/src/ggml.c). Retired ids keep their names so an old
// file gets a message that says what it holds.
const GgmlTypeInfo kTypes[] = {
    {0, "F32", 1, 4, DType::F32},
    {1, "F16", 1, 2, DType::F16},
    {2, "Q4_0", 32, 18, DType::Q4_0},
    {3, "Q4_1", 32, 20, std::nullopt},
    {4, "Q4_2", 0, 0, std::nullopt},
    {5, "Q4_3", 0, 0, std::nullopt},
    {6, "Q5_0", 32, 22, std::nullopt},
    {7, "Q5_1", 32, 24, std::nullopt},
    {8, "Q8_0", 32, 34, DType::Q8_0},
    {9, "Q8_1", 32, 36, std::nullopt},
    {10, "Q2_K", 256, 84, std::nullopt},
    {11, "Q3_K", 256, 110, std::nullopt},
    {12, "Q4_K", 256, 144, DType::Q4_K},
    {13, "Q5_K", 256, 176, std::nullopt},
    {14, "Q6_K", 256, 210, DType::Q6_K},
    {15, "Q8_K", 256, 292, std::nullopt},
    {16, "IQ2_XXS", 256, 66, std::nullopt},
    {17, "IQ2_XS", 256, 74, std::nullopt},
    {18, "IQ3_XXS", 256, 98, std::nullopt},
    {19, "IQ1_S", 256, 50, std::nullopt},
    {20, "IQ4_NL", 32, 18, std::nullopt},
    {21, "IQ3_S", 256, 110, std::nullopt},
    {22, "IQ2_S", 256, 82, std::nullopt},
    {23, "IQ4_XS", 256, 136, std::nullopt},
    {24, "I8", 1, 1, std::nullopt},
    {25, "I16", 1, 2, std::nullopt},
    {26, "I32", 1, 4, std::nullopt},
    {27, "I64", 1, 8, std::nullopt},
    {28, "F64", 1, 8, std::nullopt},
    {29, "IQ1_M", 256, 56, std::nullopt},
    {30, "BF16", 1, 2, DType::BF16},
    {31, "Q4_0_4_4", 0, 0, std::nullopt},
    {32, "Q4_0_4_8", 0, 0, std::nullopt},
    {33, "Q4_0_8_8", 0, 0, std::nullopt},
    {34, "TQ1_0", 256, 54, std::nullopt},
    {35, "TQ2_0", 256, 66, std::nullopt},
    {36, "IQ4_NL_4_4", 0, 0, std::nullopt},
    {37, "IQ4_NL_4_8", 0, 0, std::nullopt},
    {38, "IQ4_NL_8_8", 0, 0, std::nullopt},
    {39, "MXFP4", 32, 17, std::nullopt},
};

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  // Ids are the table's indices; the check keeps that true if someone inserts out of order.
  if (id >= std::size(kTypes) || kTypes[id].id != id) return nullptr;
  return &kTypes[id];
}

const GgmlTypeInfo* ggml_type_of(DType t) {
  for (const GgmlTypeInfo& info : kTypes) {
    if (info.dtype == t) return &info;
  }
  return nullptr;
}

}  // namespace fineserve::model
