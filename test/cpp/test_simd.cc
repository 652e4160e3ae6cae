// Every SIMD level this host can run is checked against an independent float64 reference, so a
// kernel that is wrong only on AVX2 or only on AVX-512 fails here rather than deep in a model.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ios>
#include <random>
#include <vector>

#include "simd/dispatch.h"

using fineserve::simd::Kernels;
using fineserve::simd::Level;

namespace {

std::vector<const Kernels*> runnable_tables() {
  std::vector<const Kernels*> out;
  for (Level level : fineserve::simd::supported_levels()) {
    const Kernels* k = fineserve::simd::kernels_for(level);
    REQUIRE(k != nullptr);
    REQUIRE(k->level == level);
    out.push_back(k);
  }
  return out;
}

// binary16 decoded by its definition, in double: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals
// 2^-14 * m/1024. Shares no code with the kernels.
double half_reference(uint16_t h) {
  int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  double mag;
  if (exp == 31) mag = mant ? NAN : INFINITY;
  else if (exp == 0) mag = std::ldexp(static_cast<double>(mant), -24);
  else mag = std::ldexp(1.0 + mant / 1024.0, exp - 15);
  return sign ? -mag : mag;
}

}  // namespace

TEST_CASE("baseline is always compiled and supported, levels ascend") {
  auto levels = fineserve::simd::supported_levels();
  REQUIRE(!levels.empty());
  CHECK(levels.front() == Level::Baseline);
  for (size_t i = 1; i < levels.size(); ++i) CHECK(levels[i - 1] < levels[i]);
  MESSAGE("SIMD levels runnable here: " << levels.size());
}

TEST_CASE("level names round-trip and reject unknown names") {
  for (Level level : {Level::Baseline, Level::Avx2, Level::Avx512}) {
    Level parsed;
    REQUIRE(fineserve::simd::parse_level(fineserve::simd::level_name(level), &parsed));
    CHECK(parsed == level);
  }
  Level unused;
  CHECK_FALSE(fineserve::simd::parse_level("sse9", &unused));
  CHECK_FALSE(fineserve::simd::parse_level("", &unused));
}

TEST_CASE("select_level honours, lowers and reports FINESERVE_SIMD") {
  Level best = fineserve::simd::supported_levels().back();
  auto none = fineserve::simd::select_level(nullptr);
  CHECK(none.level == best);
  CHECK(none.note.empty());

  auto base = fineserve::simd::select_level("baseline");
  CHECK(base.level == Level::Baseline);
  CHECK(base.note.empty() == (best == Level::Baseline));

  auto bogus = fineserve::simd::select_level("avx9000");
  CHECK(bogus.level == best);
  CHECK(bogus.note.find("avx9000") != std::string::npos);

  auto top = fineserve::simd::select_level("avx512");
  if (best == Level::Avx512) {
    CHECK(top.level == Level::Avx512);
  } else {
    CHECK(top.level == best);
    CHECK(top.note.find("not supported") != std::string::npos);
  }
}

TEST_CASE("dot_f32 matches a float64 reference at every length and level") {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (const Kernels* k : runnable_tables()) {
    CAPTURE(fineserve::simd::level_name(k->level));
    for (size_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 129, 1000, 4099}) {
      CAPTURE(n);
      // Offset by one float so unaligned loads are exercised.
      std::vector<float> a(n + 1), b(n + 1);
      for (auto& x : a) x = dist(rng);
      for (auto& x : b) x = dist(rng);
      double exact = 0, magnitude = 0;
      for (size_t i = 0; i < n; ++i) {
        exact += static_cast<double>(a[i + 1]) * b[i + 1];
        magnitude += std::fabs(static_cast<double>(a[i + 1]) * b[i + 1]);
      }
      float got = k->dot_f32(a.data() + 1, b.data() + 1, n);
      // Any summation order in float is within n * eps * sum|a_i b_i| of the exact value.
      double bound = (n + 1) * 0x1p-24 * magnitude + 1e-30;
      CHECK(std::fabs(got - exact) <= bound);
    }
  }
}

TEST_CASE("f16_to_f32 is exact for all 65536 inputs at every level") {
  std::vector<uint16_t> all(65536 + 3);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (const Kernels* k : runnable_tables()) {
    CAPTURE(fineserve::simd::level_name(k->level));
    std::vector<float> out(all.size(), -12345.0f);
    k->f16_to_f32(all.data(), out.data(), all.size());
    int mismatches = 0;
    for (uint32_t i = 0; i < 65536; ++i) {
      double want = half_reference(static_cast<uint16_t>(i));
      float got = out[i];
      bool ok = std::isnan(want) ? std::isnan(got) : (static_cast<double>(got) == want &&
                                                       std::signbit(got) == std::signbit(want));
      if (!ok && ++mismatches <= 5) MESSAGE("half 0x" << std::hex << i << " gave " << got);
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("active() is one of the runnable tables") {
  const Kernels& k = fineserve::simd::active();
  CHECK(fineserve::simd::kernels_for(k.level) == &k);
  CHECK(k.level == fineserve::simd::active_selection().level);
}

namespace {

double bf16_reference(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// True when `got` decodes to a value no farther from x than its neighbours (nearest rounding),
// and a tie went to the even encoding.
template <typename Decode>
bool is_nearest(float x, uint16_t got, Decode decode) {
  double d = std::fabs(decode(got) - x);
  for (int delta : {-1, 1}) {
    uint16_t nb = static_cast<uint16_t>(got + delta);
    if ((nb & 0x7fff) == 0x7fff && std::isnan(decode(nb))) continue;
    double other = decode(nb);
    if ((got ^ nb) & 0x8000) continue;  // crossing the sign bit is not a neighbour
    if (std::isnan(other)) continue;
    double e = std::fabs(other - x);
    if (e < d) return false;
    if (e == d && (got & 1)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("bf16_to_f32 is exact for all inputs at every level") {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (const Kernels* k : runnable_tables()) {
    CAPTURE(fineserve::simd::level_name(k->level));
    std::vector<float> out(all.size());
    k->bf16_to_f32(all.data(), out.data(), all.size());
    int bad = 0;
    for (uint32_t i = 0; i < 65536; ++i) {
      double want = bf16_reference(static_cast<uint16_t>(i));
      bad += std::isnan(want) ? !std::isnan(out[i]) : static_cast<double>(out[i]) != want;
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("f32_to_f16 and f32_to_bf16 round to nearest even and round-trip every value") {
  std::mt19937 rng(99);
  std::vector<float> xs;
  for (int i = 0; i < 20000; ++i) {
    uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, sizeof f);
    if (std::isnan(f)) continue;
    xs.push_back(f);
  }
  std::uniform_real_distribution<float> moderate(-70000.0f, 70000.0f);
  for (int i = 0; i < 20000; ++i) xs.push_back(moderate(rng) * (i % 3 == 0 ? 1e-6f : 1.0f));
  for (const Kernels* k : runnable_tables()) {
    CAPTURE(fineserve::simd::level_name(k->level));
    std::vector<uint16_t> h(xs.size()), b(xs.size());
    k->f32_to_f16(xs.data(), h.data(), xs.size());
    k->f32_to_bf16(xs.data(), b.data(), xs.size());
    int bad_h = 0, bad_b = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      float x = xs[i];
      if (std::fabs(x) >= 65520.0f) {
        bad_h += (h[i] & 0x7fff) != 0x7c00;  // overflow to inf
      } else {
        bad_h += !is_nearest(x, h[i], half_reference);
      }
      if (std::isinf(x) || std::fabs(x) > 3.38e38f) continue;
      bad_b += !is_nearest(x, b[i], bf16_reference);
    }
    CHECK(bad_h == 0);
    CHECK(bad_b == 0);
    // Every finite half survives f16 -> f32 -> f16.
    std::vector<uint16_t> all, back(65536);
    for (uint32_t i = 0; i < 65536; ++i) all.push_back(static_cast<uint16_t>(i));
    std::vector<float> f(65536);
    k->f16_to_f32(all.data(), f.data(), all.size());
    k->f32_to_f16(f.data(), back.data(), f.size());
    int lost = 0;
    for (uint32_t i = 0; i < 65536; ++i) lost += std::isnan(f[i]) ? (back[i] & 0x7c00) != 0x7c00 : back[i] != i;
    CHECK(lost == 0);
    float nan = std::nanf("");
    uint16_t hn, bn;
    k->f32_to_f16(&nan, &hn, 1);
    k->f32_to_bf16(&nan, &bn, 1);
    CHECK(std::isnan(half_reference(hn)));
    CHECK(std::isnan(bf16_reference(bn)));
  }
}

TEST_CASE("axpy_f32 matches a float64 reference") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Kernels* k : runnable_tables()) {
    for (size_t n : {0, 1, 7, 8, 17, 100, 1000}) {
      std::vector<float> x(n), y(n);
      for (auto& v : x) v = dist(rng);
      for (auto& v : y) v = dist(rng);
      std::vector<float> y0 = y;
      k->axpy_f32(0.37f, x.data(), y.data(), n);
      for (size_t i = 0; i < n; ++i) CHECK(std::fabs(y[i] - (y0[i] + 0.37 * x[i])) <= 1e-6);
    }
  }
}

TEST_CASE("dot_f16_f32 and dot_bf16_f32 match a float64 reference at every length and level") {
  std::mt19937 rng(77);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (const Kernels* k : runnable_tables()) {
    CAPTURE(fineserve::simd::level_name(k->level));
    for (size_t n : {0, 1, 7, 8, 9, 31, 32, 33, 64, 100, 768, 4099}) {
      CAPTURE(n);
      std::vector<float> x(n), b(n);
      std::vector<uint16_t> h(n), bf(n);
      for (auto& v : x) v = dist(rng);
      for (auto& v : b) v = dist(rng);
      k->f32_to_f16(x.data(), h.data(), n);
      k->f32_to_bf16(x.data(), bf.data(), n);
      double exact_h = 0, exact_b = 0, magnitude = 0;
      for (size_t i = 0; i < n; ++i) {
        exact_h += half_reference(h[i]) * b[i];
        exact_b += bf16_reference(bf[i]) * b[i];
        magnitude += std::fabs(static_cast<double>(x[i]) * b[i]) * 1.01;
      }
      double bound = (n + 1) * 0x1p-24 * magnitude + 1e-30;
      CHECK(std::fabs(k->dot_f16_f32(h.data(), b.data(), n) - exact_h) <= bound);
      CHECK(std::fabs(k->dot_bf16_f32(bf.data(), b.data(), n) - exact_b) <= bound);
    }
  }
}

TEST_CASE("silu_mul_f32 matches a float64 reference, saturates cleanly, and computes a tail like a body") {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> wide(-30.0f, 30.0f), unit(-2.0f, 2.0f);
  // Lengths around every vector width; extremes where exp(-g) would overflow a naive form.
  const std::vector<float> extremes = {0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, -87.0f, 89.0f, -89.0f, 200.0f, -200.0f, 1e30f, -1e30f};
  for (const Kernels* k : runnable_tables()) {
    CAPTURE(fineserve::simd::level_name(k->level));
    for (size_t n : {1u, 7u, 8u, 9u, 15u, 16u, 17u, 33u, 100u}) {
      std::vector<float> g(n), u(n), out(n);
      for (size_t i = 0; i < n; ++i) {
        g[i] = i < extremes.size() ? extremes[i] : wide(rng);
        u[i] = unit(rng);
      }
      k->silu_mul_f32(g.data(), u.data(), out.data(), n);
      for (size_t i = 0; i < n; ++i) {
        CAPTURE(g[i]);
        const double ref = static_cast<double>(g[i]) / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
        REQUIRE(std::isfinite(out[i]));
        CHECK(std::fabs(out[i] - ref) <= 1e-6 * std::fabs(ref) + 1e-35);
      }
      // In place (out aliases gate), and element i's result does not depend on its position in
      // the call: the same values shifted by one give the same bits.
      std::vector<float> in_place = g;
      k->silu_mul_f32(in_place.data(), u.data(), in_place.data(), n);
      CHECK(std::memcmp(in_place.data(), out.data(), n * sizeof(float)) == 0);
      if (n > 1) {
        std::vector<float> tail(n - 1);
        k->silu_mul_f32(g.data() + 1, u.data() + 1, tail.data(), n - 1);
        CHECK(std::memcmp(tail.data(), out.data() + 1, (n - 1) * sizeof(float)) == 0);
      }
    }
  }
}
