// gpu::linear on every weight type it supports, decode (GEMV) and prefill (tensor-core GEMM or
// GEMV token tiles) token counts, on shapes that leave partial tiles, against two references:
// cpp/core's ops::linear on the same weight bytes, and a float64 product of the dequantized
// weights with the activations as the GPU path defines them (quantized per token, or rounded to
// f16/bf16 for the tensor cores). The output is poisoned before every run, so an element the
// kernels never write shows up as NaN. The relative errors are reported on failure (INFO).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/device.h"
#include "engine/thread_pool.h"
#include "kernels/kernels.h"
#include "ops/linear.h"
#include "quant/fp8.h"
#include "quant/quantize.h"
#include "quant/weight_format.h"
#include "simd/half.h"

namespace gpu = fineserve::gpu;
namespace quant = fineserve::quant;
using fineserve::model::DType;
using fineserve::model::TensorView;

namespace {

// Mirrors gpu::linear's choice: above this many tokens every type but F32 takes the GEMM.
constexpr uint32_t kDecodeTokens = 8;

struct Shape {
  uint32_t rows, cols, group;
};

struct HostWeights {
  std::vector<uint8_t> bytes;
  std::vector<double> dequant;  // rows x cols, what the bytes decode to
  uint64_t row_bytes = 0;
};

HostWeights make_weights(DType t, const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  HostWeights w;
  w.row_bytes = quant::row_bytes(t, s.cols, s.group);
  w.bytes.assign(w.row_bytes * s.rows, 0);
  std::vector<float> row(s.cols), back(s.cols);
  w.dequant.resize(static_cast<size_t>(s.rows) * s.cols);
  for (uint32_t r = 0; r < s.rows; ++r) {
    for (float& v : row) v = dist(rng);
    uint8_t* dst = w.bytes.data() + r * w.row_bytes;
    if (t == DType::F32) {
      std::memcpy(dst, row.data(), 4ull * s.cols);
    } else if (t == DType::F16 || t == DType::BF16) {
      for (uint32_t i = 0; i < s.cols; ++i) {
        const uint16_t h = t == DType::F16 ? fineserve::simd::f32_to_f16_scalar(row[i])
                                           : fineserve::simd::f32_to_bf16_scalar(row[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
    } else {
      quant::quantize_row(t, row.data(), s.cols, s.group, dst);
    }
    quant::dequantize_row(t, dst, s.cols, s.group, back.data());
    for (uint32_t i = 0; i < s.cols; ++i) w.dequant[static_cast<size_t>(r) * s.cols + i] = back[i];
  }
  return w;
}

// One token's activations as the GPU path uses them: x' = x * input_scale, then per token int8
// (W8A8) or e4m3 (FP8, W4A8) with the format's scale, or f16/bf16 on the tensor-core path.
std::vector<double> path_activations(DType t, bool gemm, const float* x, const float* input_scale, uint32_t cols) {
  std::vector<float> v(cols);
  float amax = 0.0f;
  for (uint32_t i = 0; i < cols; ++i) {
    v[i] = input_scale ? x[i] * input_scale[i] : x[i];
    amax = std::max(amax, std::fabs(v[i]));
  }
  std::vector<double> out(cols);
  for (uint32_t i = 0; i < cols; ++i) {
    double q = v[i];
    if (t == DType::W8A8) {
      const float sx = amax / 127.0f;
      q = std::nearbyint(v[i] / sx) * static_cast<double>(sx);
    } else if (t == DType::FP8 || t == DType::W4A8) {
      const float sx = amax / quant::kFp8Max;
      q = quant::fp8_to_f32(quant::f32_to_fp8(v[i] / sx)) * static_cast<double>(sx);
    } else if (gemm && t == DType::BF16) {
      q = fineserve::simd::bf16_to_f32_scalar(fineserve::simd::f32_to_bf16_scalar(v[i]));
    } else if (gemm && (t == DType::F16 || t == DType::W4A16)) {
      q = fineserve::simd::f16_to_f32_scalar(fineserve::simd::f32_to_f16_scalar(v[i]));
    }
    out[i] = q;
  }
  return out;
}

double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

struct Tolerance {
  double vs_cpu, vs_f64;
};

// The bounds per path. GEMV: f32 sums of the very values the CPU uses. GEMM: f16/bf16 rounding of
// the activations (and of W4A16's dequantized weights) shows against the CPU's f32 activations;
// against the f64 product of the same rounded operands only the accumulation (and W4A16's weight
// rounding) remains.
Tolerance tolerance(DType t, bool gemm) {
  if (!gemm) return {2e-6, 2e-6};
  switch (t) {
    case DType::F16: return {2e-3, 1e-5};
    case DType::BF16: return {1e-2, 1e-5};
    case DType::W4A16: return {2e-3, 2e-3};
    default: return {1e-5, 1e-5};  // W8A8 (exact int32), FP8 and W4A8 (exact f16 operands)
  }
}

struct Run {
  uint32_t tokens;
  bool input_scale, bias;
};

struct Case {
  Shape shape;
  std::vector<Run> runs;
};

// Sets the GEMM version for one scope, then goes back to the automatic choice.
struct GemmVersion {
  explicit GemmVersion(int v) { gpu::set_gemm_version(v); }
  ~GemmVersion() { gpu::set_gemm_version(0); }
};

// version 1: every run, GEMM runs through v1; version 2: only the GEMM runs, through v2 (also
// below kGemmV2MinTokens, so that tiles with few tokens are covered).
void check_type(DType t, int version) {
  // Partial tiles everywhere: rows and tokens not multiples of 64 (or of the GEMV's 8 rows), cols
  // not multiples of the 64-byte k tile, F16/BF16 rows of 98 elements not 16-byte aligned, last
  // groups partial (160 = 2 x 64 + 32, 98 = 3 x 32 + 2, 288 = 2 x 128 + 32). The last two shapes
  // are for v2's 128 x 128 tiles: 200 x 136 x 296 leaves a partial tile in every dimension
  // (296 = 9 x 32 + 8 f16, 4 x 64 + 40 int8), 264 x 272 x 320 has 2 full tiles and a partial
  // one in tokens and rows and more k steps (10 f16, 5 int8) than pipeline stages.
  const std::vector<Case> cases = {
      {{72, 160, 64}, {{1, false, false}, {3, false, true}, {8, true, true}, {70, true, true}}},
      {{37, 98, 32}, {{1, true, false}, {5, false, true}, {8, false, false}, {40, true, false}}},
      {{130, 288, 128}, {{2, true, true}, {7, true, false}, {9, false, true}, {130, true, true}}},
      {{136, 296, 64}, {{200, true, true}}},
      {{272, 320, 64}, {{264, false, true}}},
  };
  const GemmVersion forced(version);
  fineserve::engine::ThreadPool pool(2);
  uint32_t seed = 1000 * static_cast<uint32_t>(t);
  for (const Case& cs : cases) {
    const Shape& s = cs.shape;
    const HostWeights hw = make_weights(t, s, ++seed);
    gpu::DeviceBuffer dw(hw.bytes.size(), "weights");
    gpu::copy_to_device(dw.as(), hw.bytes.data(), hw.bytes.size(), nullptr);

    std::mt19937 rng(++seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> scale_dist(0.5f, 2.0f);
    std::vector<float> input_scale(s.cols), bias(s.rows);
    for (float& v : input_scale) v = scale_dist(rng);
    for (float& v : bias) v = 0.1f * normal(rng);
    gpu::DeviceBuffer d_is(4ull * s.cols, "input_scale"), d_bias(4ull * s.rows, "bias");
    gpu::copy_to_device(d_is.as(), input_scale.data(), 4ull * s.cols, nullptr);
    gpu::copy_to_device(d_bias.as(), bias.data(), 4ull * s.rows, nullptr);

    for (const Run& run : cs.runs) {
      const bool gemm = run.tokens > kDecodeTokens && t != DType::F32;
      if (version == 2 && !gemm) continue;
      if (t == DType::F32 && s.rows > 130) continue;  // the large shapes are for the GEMM tiles
      CAPTURE(version);
      CAPTURE(fineserve::model::dtype_name(t));
      CAPTURE(s.rows);
      CAPTURE(s.cols);
      CAPTURE(run.tokens);
      CAPTURE(run.input_scale);
      CAPTURE(run.bias);
      std::vector<float> x(static_cast<size_t>(run.tokens) * s.cols);
      for (float& v : x) v = normal(rng);

      gpu::DeviceMatrix m;
      m.data = dw.as<uint8_t>();
      m.dtype = t;
      m.rows = s.rows;
      m.cols = s.cols;
      m.group = s.group;
      m.row_bytes = hw.row_bytes;
      m.data_offset = quant::row_data_offset(t, s.cols, s.group);
      m.input_scale = run.input_scale ? d_is.as<float>() : nullptr;
      REQUIRE(gpu::linear_supports(t));

      gpu::DeviceBuffer dx(4 * x.size(), "x"), dy(4ull * run.tokens * s.rows, "y");
      gpu::DeviceBuffer scratch(gpu::linear_scratch_bytes(m, run.tokens), "scratch");
      gpu::copy_to_device(dx.as(), x.data(), 4 * x.size(), nullptr);
      gpu::fill_bytes(dy.as(), 0xFF, dy.bytes(), nullptr);  // NaN: unwritten outputs show
      gpu::linear(dx.as<float>(), run.tokens, m, run.bias ? d_bias.as<float>() : nullptr, dy.as<float>(),
                  scratch.as(), nullptr);
      gpu::stream_sync(nullptr);
      std::vector<float> y(static_cast<size_t>(run.tokens) * s.rows);
      gpu::copy_to_host(y.data(), dy.as(), 4 * y.size(), nullptr);
      size_t bad = 0;
      for (float v : y) bad += std::isfinite(v) ? 0 : 1;
      CHECK(bad == 0);

      // (a) cpp/core on the same bytes.
      TensorView w;
      w.name = "w";
      w.dtype = t;
      w.shape = {s.rows, s.cols};
      w.data = hw.bytes.data();
      w.bytes = hw.bytes.size();
      w.group = s.group;
      w.input_scale = run.input_scale ? input_scale.data() : nullptr;
      TensorView b;
      b.name = "b";
      b.dtype = DType::F32;
      b.shape = {s.rows};
      b.data = reinterpret_cast<const uint8_t*>(bias.data());
      b.bytes = 4ull * s.rows;
      std::vector<float> cpu(y.size());
      fineserve::ops::linear(pool, x.data(), run.tokens, w, run.bias ? &b : nullptr, cpu.data());
      std::vector<double> cpu_d(cpu.begin(), cpu.end());

      // (b) float64 over the dequantized weights.
      std::vector<double> ref(y.size());
      for (uint32_t tok = 0; tok < run.tokens; ++tok) {
        const std::vector<double> a = path_activations(t, gemm, x.data() + static_cast<size_t>(tok) * s.cols,
                                                       run.input_scale ? input_scale.data() : nullptr, s.cols);
        for (uint32_t r = 0; r < s.rows; ++r) {
          double sum = run.bias ? bias[r] : 0.0;
          for (uint32_t i = 0; i < s.cols; ++i) sum += hw.dequant[static_cast<size_t>(r) * s.cols + i] * a[i];
          ref[static_cast<size_t>(tok) * s.rows + r] = sum;
        }
      }
      const double e_cpu = rel_error(y, cpu_d), e_ref = rel_error(y, ref);
      const Tolerance tol = tolerance(t, gemm);
      INFO((gemm ? "tensor-core GEMM" : "GEMV"));
      CAPTURE(e_cpu);
      CAPTURE(e_ref);
      CHECK(e_cpu < tol.vs_cpu);
      CHECK(e_ref < tol.vs_f64);
    }
  }
}

}  // namespace

TEST_CASE("gpu linear: F32") { check_type(DType::F32, 1); }
TEST_CASE("gpu linear: F16 (GEMM v1)") { check_type(DType::F16, 1); }
TEST_CASE("gpu linear: F16 (GEMM v2)") { check_type(DType::F16, 2); }
TEST_CASE("gpu linear: BF16 (GEMM v1)") { check_type(DType::BF16, 1); }
TEST_CASE("gpu linear: BF16 (GEMM v2)") { check_type(DType::BF16, 2); }
TEST_CASE("gpu linear: W8A8 (GEMM v1)") { check_type(DType::W8A8, 1); }
TEST_CASE("gpu linear: W8A8 (GEMM v2)") { check_type(DType::W8A8, 2); }
TEST_CASE("gpu linear: FP8 (GEMM v1)") { check_type(DType::FP8, 1); }
TEST_CASE("gpu linear: FP8 (GEMM v2)") { check_type(DType::FP8, 2); }
TEST_CASE("gpu linear: W4A16 (GEMM v1)") { check_type(DType::W4A16, 1); }
TEST_CASE("gpu linear: W4A16 (GEMM v2)") { check_type(DType::W4A16, 2); }
TEST_CASE("gpu linear: W4A8 (GEMM v1)") { check_type(DType::W4A8, 1); }
TEST_CASE("gpu linear: W4A8 (GEMM v2)") { check_type(DType::W4A8, 2); }

TEST_CASE("gpu linear: the GEMM version follows the token count unless forced") {
  if (std::getenv("FINESERVE_GEMM") != nullptr) return;  // then the environment decides
  CHECK(gpu::gemm_version(gpu::kGemmV2MinTokens - 1) == 1);
  CHECK(gpu::gemm_version(gpu::kGemmV2MinTokens) == 2);
  {
    const GemmVersion forced(1);
    CHECK(gpu::gemm_version(4096) == 1);
  }
  {
    const GemmVersion forced(2);
    CHECK(gpu::gemm_version(9) == 2);
  }
  CHECK(gpu::gemm_version(4096) == 2);
}

// ldmatrix.x4 against the PTX ISA's layout, written out here rather than taken from the kernels:
// lanes 8i .. 8i + 7 address rows 0..7 of matrix i, and lane l's register i holds elements
// 2 (l % 4) and 2 (l % 4) + 1 (low half first) of row l / 4 of matrix i. The rows are permuted so
// that a lane reading its own address, or matrices taken from the wrong lanes, cannot pass.
TEST_CASE("gpu linear: ldmatrix.x4 gives each lane the words of the PTX fragment layout") {
  std::vector<uint16_t> src(32 * 8);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint16_t>(0x1000 + 7 * i);
  std::vector<uint32_t> row_of_lane(32);
  for (uint32_t l = 0; l < 32; ++l) row_of_lane[l] = (l * 13 + 5) % 32;
  gpu::DeviceBuffer d_src(2 * src.size(), "src"), d_rows(4 * 32, "rows"), d_out(4 * 128, "out");
  gpu::copy_to_device(d_src.as(), src.data(), 2 * src.size(), nullptr);
  gpu::copy_to_device(d_rows.as(), row_of_lane.data(), 4 * 32, nullptr);
  gpu::fill_bytes(d_out.as(), 0xFF, d_out.bytes(), nullptr);
  gpu::ldmatrix_probe(d_src.as<uint16_t>(), d_rows.as<uint32_t>(), d_out.as<uint32_t>(), nullptr);
  gpu::stream_sync(nullptr);
  std::vector<uint32_t> out(128);
  gpu::copy_to_host(out.data(), d_out.as(), 4 * out.size(), nullptr);
  int wrong = 0;
  for (uint32_t l = 0; l < 32; ++l) {
    for (uint32_t i = 0; i < 4; ++i) {
      const uint32_t row = row_of_lane[8 * i + l / 4], col = 2 * (l % 4);
      const uint32_t want = src[row * 8 + col] | static_cast<uint32_t>(src[row * 8 + col + 1]) << 16;
      wrong += out[4 * l + i] == want ? 0 : 1;
    }
  }
  CHECK(wrong == 0);
}

TEST_CASE("gpu linear: supports exactly the types it has kernels for") {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::W8A8, DType::FP8, DType::W4A16, DType::W4A8}) {
    CHECK(gpu::linear_supports(t));
  }
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) CHECK_FALSE(gpu::linear_supports(t));
}
