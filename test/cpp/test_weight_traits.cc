// The weight-type table (quant/weight_traits.h) and the layer-tensor table (model/layer_tensors.h):
// every row complete, the byte geometry the published layouts give, one fallback rule for every
// per-level kernel table, and the visitor yielding each layer tensor once.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "model/ggml_type.h"
#include "model/layer_tensors.h"
#include "quant/weight_format.h"
#include "quant/weight_traits.h"
#include "simd/dispatch.h"

using fineserve::model::DType;
namespace model = fineserve::model;
namespace quant = fineserve::quant;
namespace simd = fineserve::simd;

TEST_CASE("weight traits: one complete row per DType, in order") {
  CHECK(quant::check_weight_traits() == "");
  size_t i = 0;
  for (const quant::WeightTypeTraits& row : quant::all_weight_types()) {
    CAPTURE(row.name);
    CHECK(static_cast<size_t>(row.type) == i++);
    CHECK(&quant::traits(row.type) == &row);
    CHECK(std::string(model::dtype_name(row.type)) == row.name);
    CHECK((row.decode != nullptr));
    // Baseline is mandatory wherever activations are prepared for a row dot.
    CHECK((row.act != quant::ActPrep::None) == (row.row_dot[0] != nullptr));
    CHECK((row.widen != nullptr) == (row.fused_dot != nullptr));
  }
  CHECK(i == static_cast<size_t>(DType::W4A8) + 1);
}

TEST_CASE("weight traits: row bytes match the published block geometry") {
  struct Known {
    DType t;
    uint32_t block, bytes;
  } known[] = {{DType::F32, 1, 4},      {DType::F16, 1, 2},     {DType::BF16, 1, 2},   {DType::Q8_0, 32, 34},
               {DType::Q4_0, 32, 18},   {DType::Q4_K, 256, 144}, {DType::Q6_K, 256, 210}};
  for (const Known& k : known) {
    CAPTURE(model::dtype_name(k.t));
    const quant::WeightTypeTraits& row = quant::traits(k.t);
    CHECK(row.block_size == k.block);
    CHECK(row.block_bytes == k.bytes);
    CHECK(quant::row_bytes(k.t, 4 * 256) == 4 * 256 / k.block * k.bytes);
    // The GGUF reader's own table agrees, both ways.
    const model::GgmlTypeInfo* g = model::ggml_type_of(k.t);
    REQUIRE(g != nullptr);
    CHECK(g->block_size == k.block);
    CHECK(g->type_size == k.bytes);
    CHECK(model::ggml_type_info(g->id) == g);
  }
  // fineserve formats: 16-byte header + data, padded to 16 (weight_format.h).
  CHECK(quant::row_bytes(DType::W8A8, 100) == 128);
  CHECK(quant::row_bytes(DType::FP8, 16) == 32);
  CHECK(quant::row_bytes(DType::W4A16, 256, 128) == 16 + 8 * 16);
  CHECK(quant::row_bytes(DType::W4A8, 256, 128) == 16 + 8 * 16);
  CHECK(quant::row_data_offset(DType::W4A16, 640, 128) == 32);
  for (DType t : {DType::W8A8, DType::FP8, DType::W4A16, DType::W4A8}) {
    CHECK(model::ggml_type_of(t) == nullptr);
    CHECK(quant::traits(t).element_bytes() == 0);
    CHECK(quant::traits(t).gpu == quant::GpuSupport::Native);
  }
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    CHECK(quant::traits(t).gpu == quant::GpuSupport::WidenF16);
  }
}

TEST_CASE("per-level kernels: one fallback rule, baseline mandatory") {
  using Fn = int (*)();
  Fn a = [] { return 0; }, b = [] { return 1; };
  const Fn only_base[simd::kLevelCount] = {a, nullptr, nullptr};
  const Fn gap[simd::kLevelCount] = {a, nullptr, b};
  const Fn none[simd::kLevelCount] = {nullptr, nullptr, nullptr};
  CHECK(simd::resolve_kernel(only_base, simd::Level::Avx512)() == 0);
  CHECK(simd::resolve_kernel(gap, simd::Level::Avx2)() == 0);
  CHECK(simd::resolve_kernel(gap, simd::Level::Avx512)() == 1);
  CHECK(simd::resolve_kernel(gap, simd::Level::Baseline)() == 0);
  CHECK((simd::resolve_kernel(none, simd::Level::Avx2) == nullptr));

  // Both tables follow it: every runnable level resolves every entry.
  for (simd::Level level : simd::supported_levels()) {
    CAPTURE(simd::level_name(level));
    const simd::Kernels* k = simd::kernels_for(level);
    REQUIRE(k != nullptr);
    CHECK(simd::missing_kernels(*k) == "");
    for (const quant::WeightTypeTraits& row : quant::all_weight_types()) {
      CAPTURE(row.name);
      CHECK((quant::row_dot(row.type, level) != nullptr) == (row.act != quant::ActPrep::None));
    }
  }
}

TEST_CASE("layer tensors: the visitor yields each tensor once, with its shape") {
  model::LlamaLayerWeights layer;
  std::set<const model::TensorView*> seen;
  std::set<std::string> roles;
  int linears = 0, biases = 0;
  model::for_each_layer_tensor(layer, [&](const model::LayerTensor& t, model::TensorView& v) {
    CHECK(seen.insert(&v).second);
    CHECK(roles.insert(t.role).second);
    linears += t.linear();
    biases += t.bias;
  });
  CHECK(seen.size() == sizeof(model::LlamaLayerWeights) / sizeof(model::TensorView));
  CHECK(linears == 7);
  CHECK(biases == 3);

  model::LlamaConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  auto shape = [&](const char* role) {
    for (const model::LayerTensor& t : model::kLayerTensors) {
      if (std::string(t.role) == role) return model::layer_tensor_shape(t, c);
    }
    return std::vector<uint64_t>{};
  };
  CHECK(shape("wq") == std::vector<uint64_t>{64, 64});
  CHECK(shape("wk") == std::vector<uint64_t>{32, 64});
  CHECK(shape("wo") == std::vector<uint64_t>{64, 64});
  CHECK(shape("w_down") == std::vector<uint64_t>{64, 160});
  CHECK(shape("bv") == std::vector<uint64_t>{32});
  CHECK(shape("ffn_norm") == std::vector<uint64_t>{64});
}
