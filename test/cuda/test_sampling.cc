// Greedy sampling on the device against engine::sample at temperature 0: the same token (first
// index of the maximum, NaN never chosen) and the same log-probability, on fresh random rows and on
// the corner cases (ties, NaN, +inf, a row without any finite logit).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "common/device.h"
#include "engine/sampler.h"
#include "kernels/kernels.h"

using namespace fineserve;

TEST_CASE("greedy sampling on the device gives engine::sample's token and log-probability") {
  const uint32_t vocab = 1000;
  std::mt19937 rng(42);
  std::normal_distribution<float> logit(0.0f, 3.0f);
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < 5; ++r) {
    std::vector<float> row(vocab);
    for (float& x : row) x = logit(rng);
    rows.push_back(row);
  }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  rows[1][17] = rows[1][900] = 40.0f;     // a tie: the lower id wins
  rows[2][3] = nan;                       // NaN is never chosen
  rows[2][4] = 50.0f;
  rows[3][250] = inf;                     // +inf entries share the probability
  rows[3][750] = inf;
  std::vector<float> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  std::vector<float> dead(vocab, -inf);  // no finite logit at all
  dead[5] = nan;
  flat.insert(flat.end(), dead.begin(), dead.end());
  const uint32_t n = static_cast<uint32_t>(rows.size() + 1);

  gpu::DeviceBuffer d_logits(flat.size() * 4, "logits"), d_tok(n * 4, "tokens"), d_lp(n * 4, "logprobs");
  gpu::copy_to_device(d_logits.as(), flat.data(), flat.size() * 4, nullptr);
  gpu::fill_bytes(d_tok.as(), 0xFF, n * 4, nullptr);
  gpu::fill_bytes(d_lp.as(), 0x7F, n * 4, nullptr);
  gpu::greedy_sample(d_logits.as<float>(), n, vocab, d_tok.as<int32_t>(), d_lp.as<float>(), nullptr);
  std::vector<int32_t> tok(n);
  std::vector<float> lp(n);
  gpu::copy_to_host(tok.data(), d_tok.as(), n * 4, nullptr);
  gpu::copy_to_host(lp.data(), d_lp.as(), n * 4, nullptr);
  gpu::stream_sync(nullptr);

  for (size_t r = 0; r < rows.size(); ++r) {
    CAPTURE(r);
    engine::SamplingParams greedy;
    engine::SamplerState state;
    state.reset(vocab, nullptr, 0);
    const engine::SampleResult want = engine::sample(rows[r].data(), vocab, greedy, state);
    CHECK(tok[r] == want.token);
    CHECK(lp[r] == doctest::Approx(want.logprob).epsilon(1e-5));
  }
  CHECK(tok[1] == 17);
  CHECK(tok[2] == 4);
  CHECK(tok[3] == 250);
  CHECK(lp[3] == doctest::Approx(-std::log(2.0)));
  CHECK(tok[n - 1] == -1);  // the executor turns this into the sampler's error
}
