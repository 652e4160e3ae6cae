// Kernels return to baseline code with the upper YMM/ZMM halves clean (simd/upper_state.h says
// why: with them dirty, the legacy-SSE float code of a baseline build ran 3x slower on Zen 4).
// Checked with the CPU's own in-use report, where it gives one.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/thread_pool.h"
#include "model/tensor.h"
#include "ops/attention_kernels.h"
#include "ops/linear.h"
#include "simd/dispatch.h"
#include "simd/half.h"
#include "simd/upper_state.h"

namespace simd = fineserve::simd;
using fineserve::model::DType;
using fineserve::model::TensorView;

namespace {

bool readable() {
  if (simd::upper_state_readable()) return true;
  MESSAGE("this CPU does not report its register state in use (XGETBV 1): nothing to check");
  return false;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace

TEST_CASE("upper state: the probe sees a dirty YMM upper half and clean_upper() clears it") {
  if (!readable()) return;
  asm volatile("vpcmpeqd %%ymm1, %%ymm1, %%ymm1" ::: "xmm1");
  CHECK(simd::upper_dirty());
  simd::clean_upper();
  CHECK_FALSE(simd::upper_dirty());
}

TEST_CASE("upper state: every simd::Kernels entry at every level returns it clean") {
  if (!readable()) return;
  const size_t n = 100;  // vector steps and a tail
  const std::vector<float> a = random_floats(n, 1), b = random_floats(n, 2);
  std::vector<uint16_t> h(n);
  std::vector<float> out(n);
  for (simd::Level level : simd::supported_levels()) {
    const simd::Kernels& k = *simd::kernels_for(level);
    CAPTURE(simd::level_name(level));
    k.f32_to_f16(a.data(), h.data(), n);
    CHECK_FALSE(simd::upper_dirty());
    k.f16_to_f32(h.data(), out.data(), n);
    CHECK_FALSE(simd::upper_dirty());
    k.f32_to_bf16(a.data(), h.data(), n);
    CHECK_FALSE(simd::upper_dirty());
    k.bf16_to_f32(h.data(), out.data(), n);
    CHECK_FALSE(simd::upper_dirty());
    volatile float sink = k.dot_f32(a.data(), b.data(), n);
    CHECK_FALSE(simd::upper_dirty());
    sink = k.dot_f16_f32(h.data(), b.data(), n);
    CHECK_FALSE(simd::upper_dirty());
    sink = k.dot_bf16_f32(h.data(), b.data(), n);
    CHECK_FALSE(simd::upper_dirty());
    (void)sink;
    k.axpy_f32(0.5f, a.data(), out.data(), n);
    CHECK_FALSE(simd::upper_dirty());
    k.silu_mul_f32(a.data(), b.data(), out.data(), n);
    CHECK_FALSE(simd::upper_dirty());
  }
}

TEST_CASE("upper state: the attention kernels at every level return it clean") {
  if (!readable()) return;
  const size_t d = 64, rows = 3, kp = 16, keys = 11;
  const std::vector<float> q = random_floats(rows * d, 3), v = random_floats(kp * d, 4);
  std::vector<float> kt(d * kp), s(rows * kp), acc(rows * d, 0.0f), dst(d);
  const std::vector<float> step(d, 0.01f), minimum(d, -0.1f);
  std::vector<uint8_t> codes(d, 0x35);
  for (simd::Level level : simd::supported_levels()) {
    const fineserve::ops::AttnKernels& k = fineserve::ops::attn_kernels(level);
    CAPTURE(simd::level_name(level));
    k.fp8_row(codes.data(), d, nullptr, dst.data());
    CHECK_FALSE(simd::upper_dirty());
    k.int4_k_row(codes.data(), step.data(), minimum.data(), d, dst.data());
    CHECK_FALSE(simd::upper_dirty());
    k.int4_v_row(codes.data(), 0.02f, d, dst.data());
    CHECK_FALSE(simd::upper_dirty());
    k.transpose(v.data(), keys, d, kt.data(), kp);
    CHECK_FALSE(simd::upper_dirty());
    k.scores(q.data(), rows, d, kt.data(), kp, s.data());
    CHECK_FALSE(simd::upper_dirty());
    float m = -1e30f, l = 0.0f;
    volatile float alpha = k.softmax(s.data(), kp, keys, &m, &l);
    (void)alpha;
    CHECK_FALSE(simd::upper_dirty());
    const std::vector<float> alphas(rows, 1.0f);
    const std::vector<uint32_t> counts(rows, keys);
    k.accumulate(s.data(), kp, alphas.data(), counts.data(), rows, v.data(), d, acc.data());
    CHECK_FALSE(simd::upper_dirty());
  }
}

TEST_CASE("upper state: linear() on the thread pool returns it clean, decode and prefill") {
  if (!readable()) return;
  const size_t in = 96, out = 40;
  const std::vector<float> w = random_floats(in * out, 5), x = random_floats(4 * in, 6);
  std::vector<uint16_t> wh(in * out);
  for (size_t i = 0; i < wh.size(); ++i) wh[i] = simd::f32_to_f16_scalar(w[i]);
  TensorView view;
  view.name = "w";
  view.dtype = DType::F16;
  view.shape = {out, in};
  view.data = reinterpret_cast<const uint8_t*>(wh.data());
  view.bytes = 2 * wh.size();
  std::vector<float> y(4 * out);
  for (unsigned threads : {1u, 2u}) {
    fineserve::engine::ThreadPool pool(threads);
    for (size_t tokens : {1u, 4u}) {
      CAPTURE(threads);
      CAPTURE(tokens);
      fineserve::ops::linear(pool, x.data(), tokens, view, nullptr, y.data());
      CHECK_FALSE(simd::upper_dirty());
    }
  }
}
