// The elementwise kernels of cuda/kernels/elementwise.cu against the CPU functions they mirror
// (ops::rms_norm, ops::apply_rope, the SwiGLU and residual loops of llama_forward.cc, greedy
// sampling's argmax) and against float64 where a reference is meaningful. Under the SIMT emulator
// the results must be bit-identical wherever no reduction order enters; on a GPU the library's
// cos/sin/exp may differ from glibc's in the last bit, hence the tolerances there.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/device.h"
#include "device_buffers.h"
#include "kernels/kernels.h"
#include "model/llama_config.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "simd/half.h"

using namespace fineserve;
using test::download;
using test::random_floats;
using test::poisoned;
using test::upload;

namespace {


// Equal bits in the emulator; within `rel` (relative to |want| + 1) on a GPU.
bool close(float got, float want, float rel) {
  if (!std::isfinite(got)) return false;
  if (gpu::simulated()) return std::memcmp(&got, &want, sizeof got) == 0;
  return std::fabs(got - want) <= rel * (std::fabs(want) + 1.0f);
}

}  // namespace

TEST_CASE("elementwise: embed reads F32, F16 and BF16 rows of a padded table") {
  std::mt19937 rng(11);
  const uint32_t vocab = 37, dim = 300;
  const std::vector<int32_t> tokens = {5, 0, 36, 5, 17};
  const std::vector<float> values = random_floats(size_t{vocab} * dim, rng);
  for (model::DType dtype : {model::DType::F32, model::DType::F16, model::DType::BF16}) {
    CAPTURE(model::dtype_name(dtype));
    const uint64_t elem = dtype == model::DType::F32 ? 4 : 2, row_bytes = dim * elem + 48;  // padded rows
    std::vector<uint8_t> table(vocab * row_bytes, 0xEE);
    std::vector<float> want(size_t{vocab} * dim);
    for (uint32_t r = 0; r < vocab; ++r) {
      for (uint32_t c = 0; c < dim; ++c) {
        const float x = values[size_t{r} * dim + c];
        uint8_t* p = table.data() + r * row_bytes + c * elem;
        if (dtype == model::DType::F32) {
          std::memcpy(p, &x, 4);
          want[size_t{r} * dim + c] = x;
        } else {
          const uint16_t h = dtype == model::DType::F16 ? simd::f32_to_f16_scalar(x) : simd::f32_to_bf16_scalar(x);
          std::memcpy(p, &h, 2);
          want[size_t{r} * dim + c] = dtype == model::DType::F16 ? simd::f16_to_f32_scalar(h) : simd::bf16_to_f32_scalar(h);
        }
      }
    }
    gpu::DeviceBuffer dt = upload(table), dtok = upload(tokens), out = poisoned<float>(tokens.size() * dim);
    gpu::DeviceMatrix m;
    m.data = dt.as<uint8_t>();
    m.dtype = dtype;
    m.rows = vocab;
    m.cols = dim;
    m.row_bytes = row_bytes;
    gpu::embed(dtok.as<int32_t>(), static_cast<uint32_t>(tokens.size()), m, out.as<float>(), nullptr);
    const std::vector<float> got = download<float>(out, tokens.size() * dim);
    size_t bad = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
      for (uint32_t c = 0; c < dim; ++c) {
        const float w = want[size_t(tokens[i]) * dim + c], g = got[i * dim + c];
        bad += std::memcmp(&w, &g, 4) != 0;
      }
    }
    CHECK(bad == 0);
  }
  gpu::DeviceMatrix q8;
  q8.dtype = model::DType::Q8_0;
  CHECK_THROWS_AS(gpu::embed(nullptr, 1, q8, nullptr, nullptr), std::invalid_argument);
}

TEST_CASE("elementwise: rms_norm matches ops::rms_norm and float64, in place too") {
  std::mt19937 rng(12);
  const uint32_t rows = 3, dim = 1000;  // not a multiple of the block
  const float eps = 1e-5f;
  const std::vector<float> x = random_floats(size_t{rows} * dim, rng), w = random_floats(dim, rng, 0.5f, 1.5f);
  model::TensorView wv;
  wv.name = "norm";
  wv.dtype = model::DType::F32;
  wv.shape = {dim};
  wv.data = reinterpret_cast<const uint8_t*>(w.data());
  wv.bytes = dim * sizeof(float);
  std::vector<float> cpu(x.size());
  ops::rms_norm(x.data(), rows, dim, wv, eps, cpu.data());

  gpu::DeviceBuffer dx = upload(x), dw = upload(w), out = poisoned<float>(x.size());
  gpu::rms_norm(dx.as<float>(), rows, dim, dw.as<float>(), eps, out.as<float>(), nullptr);
  gpu::rms_norm(dx.as<float>(), rows, dim, dw.as<float>(), eps, dx.as<float>(), nullptr);  // aliased
  const std::vector<float> got = download<float>(out, x.size()), inplace = download<float>(dx, x.size());
  double max_rel = 0;
  for (uint32_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (uint32_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double scale = 1.0 / std::sqrt(ss / dim + eps);
    for (uint32_t i = 0; i < dim; ++i) {
      const size_t k = size_t{r} * dim + i;
      REQUIRE(std::isfinite(got[k]));
      // The CPU's sum runs in another order: at most a last-bit difference of the scale.
      CHECK(std::fabs(got[k] - cpu[k]) <= 4e-7f * std::fabs(cpu[k]) + 1e-30f);
      CHECK(inplace[k] == got[k]);
      const double want = x[k] * scale * w[i];
      max_rel = std::max(max_rel, std::fabs(got[k] - want) / std::fabs(want));
    }
  }
  CHECK(max_rel < 1e-6);
}

TEST_CASE("elementwise: rope rotates both styles in place as ops::apply_rope does") {
  std::mt19937 rng(13);
  model::LlamaConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000.0f;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_position = 8192;
  const std::vector<double> inv = ops::rope_inv_freq(c);
  const uint32_t heads = 3, d = c.head_dim;
  const std::vector<uint32_t> pos = {0, 7, 1000, 123457};
  const uint32_t rows = static_cast<uint32_t>(pos.size());
  for (model::RopeStyle style : {model::RopeStyle::Interleaved, model::RopeStyle::HalfSplit}) {
    const bool interleaved = style == model::RopeStyle::Interleaved;
    CAPTURE(interleaved);
    const std::vector<float> x = random_floats(size_t{rows} * heads * d, rng);
    std::vector<float> cpu = x;
    for (uint32_t r = 0; r < rows; ++r) ops::apply_rope(cpu.data() + size_t{r} * heads * d, heads, d, pos[r], style, inv);
    gpu::DeviceBuffer dx = upload(x), dp = upload(pos), di = upload(inv);
    gpu::rope(dx.as<float>(), rows, heads, d, dp.as<uint32_t>(), di.as<double>(), interleaved, nullptr);
    const std::vector<float> got = download<float>(dx, x.size());
    size_t bad = 0;
    for (size_t i = 0; i < x.size(); ++i) bad += !close(got[i], cpu[i], 1e-6f);
    CHECK(bad == 0);
    // Position 0 is the identity.
    for (uint32_t i = 0; i < heads * d; ++i) CHECK(got[i] == x[i]);
  }
  CHECK_THROWS_AS(gpu::rope(nullptr, 1, 1, 7, nullptr, nullptr, true, nullptr), std::invalid_argument);
}

TEST_CASE("elementwise: silu_mul, add_inplace and gather_rows") {
  std::mt19937 rng(14);
  const size_t n = 70001;  // several blocks and a ragged end
  const std::vector<float> g = random_floats(n, rng, -8.0f, 8.0f), u = random_floats(n, rng);
  gpu::DeviceBuffer dg = upload(g), du = upload(u);
  gpu::silu_mul(dg.as<float>(), du.as<float>(), n, nullptr);
  std::vector<float> got = download<float>(dg, n);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += !close(got[i], g[i] / (1.0f + std::exp(-g[i])) * u[i], 1e-6f);
  CHECK(bad == 0);

  gpu::DeviceBuffer dx = upload(g);
  gpu::add_inplace(dx.as<float>(), du.as<float>(), n, nullptr);
  got = download<float>(dx, n);
  bad = 0;
  for (size_t i = 0; i < n; ++i) bad += got[i] != g[i] + u[i];
  CHECK(bad == 0);

  const uint32_t dim = 257;
  const std::vector<uint32_t> rows = {3, 0, 3, 200, 9};
  gpu::DeviceBuffer dr = upload(rows), out = poisoned<float>(rows.size() * dim);
  gpu::gather_rows(du.as<float>(), dr.as<uint32_t>(), static_cast<uint32_t>(rows.size()), dim, out.as<float>(), nullptr);
  got = download<float>(out, rows.size() * dim);
  bad = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    for (uint32_t c = 0; c < dim; ++c) bad += got[i * dim + c] != u[size_t{rows[i]} * dim + c];
  }
  CHECK(bad == 0);
}

TEST_CASE("elementwise: argmax takes the first maximum and never a NaN") {
  std::mt19937 rng(15);
  const uint32_t vocab = 3001, rows = 6;
  std::vector<float> x = random_floats(size_t{rows} * vocab, rng, -10.0f, 10.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto row = [&](uint32_t r) { return x.data() + size_t{r} * vocab; };
  std::vector<int32_t> want(rows);
  // 0: a tie between 2999 and 17 (17 wins); 1: NaN ahead of and beside the maximum;
  // 2: +inf; 3: all -inf but one NaN (the first -inf wins); 4: all NaN (-1); 5: plain.
  row(0)[2999] = 50;
  row(0)[17] = 50;
  want[0] = 17;
  row(1)[0] = nan;
  row(1)[1500] = 40;
  row(1)[1501] = nan;
  want[1] = 1500;
  row(2)[2000] = inf;
  want[2] = 2000;
  for (uint32_t i = 0; i < vocab; ++i) row(3)[i] = -inf;
  row(3)[0] = nan;
  want[3] = 1;
  for (uint32_t i = 0; i < vocab; ++i) row(4)[i] = nan;
  want[4] = -1;
  want[5] = static_cast<int32_t>(std::max_element(row(5), row(5) + vocab) - row(5));
  gpu::DeviceBuffer dx = upload(x), out = poisoned<int32_t>(rows);
  gpu::argmax(dx.as<float>(), rows, vocab, out.as<int32_t>(), nullptr);
  const std::vector<int32_t> got = download<int32_t>(out, rows);
  for (uint32_t r = 0; r < rows; ++r) {
    CAPTURE(r);
    CHECK(got[r] == want[r]);
  }
}
