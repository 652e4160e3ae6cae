#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/step_plan.h"
#include "engine/thread_pool.h"

using fineserve::engine::SampleResult;
using fineserve::engine::SamplerState;
using fineserve::engine::SamplingParams;
using fineserve::engine::SequenceChunk;
using fineserve::engine::sample;
using fineserve::engine::validate;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

SamplerState fresh(uint32_t vocab, const std::vector<int32_t>& prompt = {}) {
  SamplerState s;
  s.reset(vocab, prompt.data(), static_cast<uint32_t>(prompt.size()));
  return s;
}

SampleResult draw(const std::vector<float>& logits, const SamplingParams& p, SamplerState& s) {
  return sample(logits.data(), static_cast<uint32_t>(logits.size()), p, s);
}

int32_t greedy_once(const std::vector<float>& logits, const SamplingParams& p, SamplerState s) {
  return draw(logits, p, s).token;
}

// softmax(logits / t) in double, the reference every frequency is compared with.
std::vector<double> softmax_ref(const std::vector<float>& logits, double t = 1.0) {
  double m = -INFINITY;
  for (float x : logits) m = std::max(m, x / t);
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(logits[i] / t - m);
  for (double& v : p) v /= sum;
  return p;
}

std::vector<double> log_softmax_ref(const std::vector<float>& logits) {
  double m = -INFINITY;
  for (float x : logits) m = std::max(m, double(x));
  double sum = 0;
  for (float x : logits) sum += std::exp(x - m);
  std::vector<double> lp(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) lp[i] = logits[i] - m - std::log(sum);
  return lp;
}

// Counts of `n` draws from one request (so output_index advances), penalties off.
std::vector<int> histogram(const std::vector<float>& logits, const SamplingParams& p, int n) {
  SamplerState s = fresh(static_cast<uint32_t>(logits.size()));
  std::vector<int> h(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++h[draw(logits, p, s).token];
  return h;
}

// Pearson chi-square of observed counts against `probs` restricted to tokens with probs > 0.
// Observations where probs == 0 make it infinite.
double chi_square(const std::vector<int>& h, const std::vector<double>& probs) {
  double n = std::accumulate(h.begin(), h.end(), 0.0);
  double chi = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    if (probs[i] == 0) {
      if (h[i] > 0) return INFINITY;
      continue;
    }
    double e = n * probs[i];
    chi += (h[i] - e) * (h[i] - e) / e;
  }
  return chi;
}

std::set<int32_t> drawn(const std::vector<int>& h) {
  std::set<int32_t> out;
  for (size_t i = 0; i < h.size(); ++i) {
    if (h[i] > 0) out.insert(static_cast<int32_t>(i));
  }
  return out;
}

// Logits whose softmax is exactly `probs` up to float rounding.
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::vector<double> renormalised(std::vector<double> p, const std::set<int32_t>& keep) {
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (!keep.count(static_cast<int32_t>(i))) p[i] = 0;
    sum += p[i];
  }
  for (double& v : p) v /= sum;
  return p;
}

// chi-square critical values at p = 1e-6 (scipy.stats.chi2.isf): the generator is deterministic,
// so these only have to survive a change of seed or mixer, and stay far below what a wrong
// distribution produces.
constexpr double kChi2Df1 = 23.93;
constexpr double kChi2Df2 = 27.63;
constexpr double kChi2Df4 = 33.38;
constexpr double kChi2Df63 = 131.37;

}  // namespace

TEST_CASE("sampler: reset counts the prompt, ignores ids outside the vocabulary, clears output") {
  SamplerState s;
  s.output_counts.assign(3, 7);
  s.output_index = 9;
  std::vector<int32_t> prompt = {1, 2, 1, -1, 5, 4, 1};
  s.reset(5, prompt.data(), static_cast<uint32_t>(prompt.size()));
  CHECK(s.prompt_counts == std::vector<uint32_t>{0, 3, 1, 0, 1});
  CHECK(s.output_counts == std::vector<uint32_t>(5, 0));
  CHECK(s.output_index == 0);
  s.reset(2, nullptr, 0);
  CHECK(s.prompt_counts == std::vector<uint32_t>{0, 0});
  CHECK(s.output_counts == std::vector<uint32_t>{0, 0});
}

TEST_CASE("sampler: greedy is the argmax, ties go to the lowest id, and the token is recorded") {
  SamplingParams p;  // temperature 0
  SamplerState s = fresh(6);
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 3.0f, 3.0f, 1.0f};
  SampleResult r = draw(logits, p, s);
  CHECK(r.token == 3);
  CHECK(s.output_counts[3] == 1);
  CHECK(s.output_index == 1);
  CHECK(std::accumulate(s.output_counts.begin(), s.output_counts.end(), 0u) == 1);

  logits = {-5.0f, -2.0f, -2.0f, -7.0f, -3.0f, -2.0f};
  CHECK(draw(logits, p, s).token == 1);
  CHECK(s.output_index == 2);

  // Below vLLM's 1e-5 a temperature is greedy too; filters cannot change the argmax.
  p.temperature = 5e-6f;
  p.top_k = 3;
  p.top_p = 0.5f;
  p.min_p = 0.5f;
  p.seed = 77;
  logits = {1.0f, 4.0f, 4.0f, 3.99f, 0.0f, 0.0f};
  for (int i = 0; i < 20; ++i) CHECK(draw(logits, p, s).token == 1);
}

TEST_CASE("sampler: the logits are left unchanged") {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> logits(1000);
  for (float& x : logits) x = nd(rng);
  logits[3] = kNaN;
  logits[4] = -kInf;
  std::vector<float> copy = logits;
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.01f;
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.5f;
  p.logprobs = 5;
  SamplerState s = fresh(1000, {1, 2, 3, 10, 11});
  for (int i = 0; i < 50; ++i) draw(logits, p, s);
  p.temperature = 0;
  draw(logits, p, s);
  CHECK(std::memcmp(logits.data(), copy.data(), logits.size() * sizeof(float)) == 0);
}

TEST_CASE("sampler: temperature sampling frequencies match softmax(logits / T)") {
  std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, -2.0f};
  SamplingParams p;
  p.temperature = 0.7f;
  p.seed = 12345;
  std::vector<int> h = histogram(logits, p, 20000);
  double chi = chi_square(h, softmax_ref(logits, 0.7));
  MESSAGE("chi-square vs softmax(l / 0.7): " << chi << " (bound " << kChi2Df4 << ")");
  CHECK(chi < kChi2Df4);
  // The same counts against T = 1 must be rejected, or the bound above would prove nothing.
  CHECK(chi_square(h, softmax_ref(logits, 1.0)) > 200);

  p.temperature = 2.5f;
  p.seed = 99;
  h = histogram(logits, p, 20000);
  CHECK(chi_square(h, softmax_ref(logits, 2.5)) < kChi2Df4);
}

TEST_CASE("sampler: a seed fixes the sequence; another seed changes it") {
  std::vector<float> logits = {0.1f, 0.0f, 0.2f, -0.1f, 0.05f, 0.0f, 0.15f, -0.05f};
  SamplingParams p;
  p.temperature = 1.0f;
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    SamplerState s = fresh(8);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(draw(logits, p, s).token);
    return out;
  };
  std::vector<int32_t> a = run(42);
  CHECK(a == run(42));
  CHECK(a != run(43));
  CHECK(run(0) != run(1));
  CHECK(std::set<int32_t>(a.begin(), a.end()).size() == 8);  // not stuck on one token
}

TEST_CASE("sampler: consecutive draws are independent") {
  // Successive output indices must get unrelated uniforms: pairs of consecutive tokens from a
  // uniform 8-token row are uniform over the 64 pairs.
  std::vector<float> logits(8, 0.0f);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 77;
  SamplerState s = fresh(8);
  std::vector<int> pairs(64, 0);
  int prev = draw(logits, p, s).token;
  for (int i = 0; i < 20000; ++i) {
    int t = draw(logits, p, s).token;
    ++pairs[prev * 8 + t];
    prev = t;
  }
  CHECK(chi_square(pairs, std::vector<double>(64, 1.0 / 64)) < kChi2Df63);
}

TEST_CASE("sampler: a request draws the same tokens alone or interleaved with others") {
  const uint32_t V = 300;
  // Logits that change with the step, as a model's would.
  auto logits_at = [&](int req, int step) {
    std::vector<float> l(V);
    for (uint32_t i = 0; i < V; ++i) l[i] = std::sin(0.37f * i + 1.3f * step + 2.1f * req) * 2.0f;
    return l;
  };
  std::vector<SamplingParams> params(3);
  params[0].temperature = 1.0f;
  params[0].top_p = 0.9f;
  params[0].frequency_penalty = 0.4f;
  params[0].seed = 7;
  params[1] = params[0];  // same seed, different logits: must not share a stream with request 0
  params[1].top_k = 20;
  params[2].temperature = 0.8f;
  params[2].seed = 99;
  params[2].repetition_penalty = 1.2f;
  const int steps = 100;

  std::vector<std::vector<int32_t>> alone(3);
  for (int r = 0; r < 3; ++r) {
    SamplerState s = fresh(V, {1, 2, 3});
    for (int t = 0; t < steps; ++t) alone[r].push_back(draw(logits_at(r, t), params[r], s).token);
  }
  std::vector<std::vector<int32_t>> mixed(3);
  std::vector<SamplerState> states = {fresh(V, {1, 2, 3}), fresh(V, {1, 2, 3}), fresh(V, {1, 2, 3})};
  // Uneven interleaving: request 2 starts late, request 0 sometimes takes two steps in a row.
  std::vector<int> done(3, 0);
  for (int round = 0; done[0] < steps || done[1] < steps || done[2] < steps; ++round) {
    for (int r : {1, 0, 2, 0}) {
      if (done[r] >= steps || (r == 2 && round < 10) || (r == 0 && round % 3 != 0 && done[0] > done[1])) continue;
      mixed[r].push_back(draw(logits_at(r, done[r]), params[r], states[r]).token);
      ++done[r];
    }
  }
  for (int r = 0; r < 3; ++r) CHECK(alone[r] == mixed[r]);
}

TEST_CASE("sampler: the draw depends only on (seed, output index), so a replay can resume") {
  std::vector<float> logits = {0.3f, 0.1f, 0.0f, 0.2f, -0.1f, 0.25f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 2024;
  SamplerState s = fresh(6);
  std::vector<int32_t> seq;
  for (int i = 0; i < 40; ++i) seq.push_back(draw(logits, p, s).token);
  for (uint64_t k : {0ull, 5ull, 17ull, 39ull}) {
    SamplerState resumed = fresh(6);
    resumed.output_index = k;
    CHECK(draw(logits, p, resumed).token == seq[k]);
  }
}

TEST_CASE("sampler: top_k = 1 is greedy, ties included") {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  SamplingParams p;
  p.temperature = 1.3f;
  p.top_k = 1;
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<float> logits(1000);
    for (float& x : logits) x = nd(rng);
    if (trial % 2) {  // a tie for the maximum at a higher id
      size_t best = std::max_element(logits.begin(), logits.end()) - logits.begin();
      logits[(best + 500) % 1000] = logits[best];
    }
    int32_t argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    p.seed = trial;
    SamplerState s = fresh(1000);
    CHECK(draw(logits, p, s).token == argmax);
  }
}

TEST_CASE("sampler: top_k = 2 draws only the two best, in softmax proportion") {
  std::vector<float> logits(50, -1.0f);
  logits[7] = 2.0f;
  logits[3] = 1.5f;
  logits[40] = 1.4f;  // third best, close behind
  SamplingParams p;
  p.temperature = 2.0f;
  p.top_k = 2;
  p.seed = 3;
  std::vector<int> h = histogram(logits, p, 4000);
  CHECK(drawn(h) == std::set<int32_t>{3, 7});
  CHECK(chi_square(h, renormalised(softmax_ref(logits, 2.0), {3, 7})) < kChi2Df1);
}

TEST_CASE("sampler: top_p keeps the minimal nucleus") {
  // By probability: 3 (0.4), 1 (0.3), 2 (0.2), 0 (0.1) -- ids out of rank order on purpose.
  std::vector<double> probs = {0.1, 0.3, 0.2, 0.4};
  std::vector<float> logits = logits_of(probs);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 11;
  struct Case {
    float top_p;
    std::set<int32_t> nucleus;
  };
  for (const Case& c : {Case{0.01f, {3}}, Case{0.39f, {3}}, Case{0.41f, {3, 1}}, Case{0.65f, {3, 1}},
                        Case{0.69f, {3, 1}}, Case{0.71f, {3, 1, 2}}, Case{0.89f, {3, 1, 2}},
                        Case{0.91f, {3, 1, 2, 0}}, Case{1.0f, {3, 1, 2, 0}}}) {
    CAPTURE(c.top_p);
    p.top_p = c.top_p;
    std::vector<int> h = histogram(logits, p, 4000);
    CHECK(drawn(h) == c.nucleus);
    CHECK(chi_square(h, renormalised(probs, c.nucleus)) < kChi2Df4);
  }
}

TEST_CASE("sampler: top_p on a wide vocabulary, alone and after top_k") {
  // 20000 tokens with geometrically falling probabilities over a shuffled id order: the nucleus
  // spans thousands of tokens, past the first sorted chunk.
  const uint32_t V = 20000;
  std::vector<int32_t> rank_to_id(V);
  std::iota(rank_to_id.begin(), rank_to_id.end(), 0);
  std::shuffle(rank_to_id.begin(), rank_to_id.end(), std::mt19937_64(8));
  std::vector<float> logits(V);
  for (uint32_t r = 0; r < V; ++r) logits[rank_to_id[r]] = -0.0003f * static_cast<float>(r);
  std::vector<uint32_t> id_to_rank(V);
  for (uint32_t r = 0; r < V; ++r) id_to_rank[rank_to_id[r]] = r;

  for (uint32_t top_k : {0u, 6000u}) {
    CAPTURE(top_k);
    const float top_p = 0.6f;
    // Reference nucleus size in double: smallest prefix (by rank) with mass >= top_p of the
    // (top_k-renormalised) total.
    std::vector<double> pr = softmax_ref(logits);
    uint32_t n = top_k ? top_k : V;
    double total = 0;
    for (uint32_t r = 0; r < n; ++r) total += pr[rank_to_id[r]];
    double cum = 0;
    uint32_t nucleus = 0;
    while (cum < top_p * total) cum += pr[rank_to_id[nucleus++]];
    // The boundary token must not be within rounding of top_p, or float vs double could differ.
    REQUIRE(cum - top_p * total > 1e-6 * total);
    REQUIRE(top_p * total - (cum - pr[rank_to_id[nucleus - 1]]) > 1e-6 * total);
    MESSAGE("nucleus of " << nucleus << " tokens");
    REQUIRE(nucleus > 1000);

    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = top_p;
    p.top_k = top_k;
    p.seed = 5 + top_k;
    SamplerState s = fresh(V);
    uint32_t worst = 0;
    for (int i = 0; i < 5000; ++i) worst = std::max(worst, id_to_rank[draw(logits, p, s).token]);
    CHECK(worst < nucleus);        // nothing outside the nucleus
    CHECK(worst + 30 >= nucleus);  // and the nucleus is not cut short
  }
}

TEST_CASE("sampler: top_k and top_p on a nearly flat row") {
  // Weights within 8% of each other over 20000 tokens: selection cannot stop at the coarse
  // buckets (each would hold thousands of tokens) and must narrow on finer bits.
  const uint32_t V = 20000;
  std::vector<int32_t> rank_to_id(V);
  std::iota(rank_to_id.begin(), rank_to_id.end(), 0);
  std::shuffle(rank_to_id.begin(), rank_to_id.end(), std::mt19937_64(9));
  std::vector<float> logits(V);
  std::vector<uint32_t> id_to_rank(V);
  for (uint32_t r = 0; r < V; ++r) {
    logits[rank_to_id[r]] = -4e-6f * static_cast<float>(r);
    id_to_rank[rank_to_id[r]] = r;
  }
  auto worst_rank = [&](const SamplingParams& p) {
    SamplerState s = fresh(V);
    uint32_t worst = 0;
    for (int i = 0; i < 4000; ++i) worst = std::max(worst, id_to_rank[draw(logits, p, s).token]);
    return worst;
  };
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 31;

  p.top_k = 8000;
  uint32_t worst = worst_rank(p);
  CHECK(worst < 8000);
  CHECK(worst + 40 >= 8000);

  p.top_k = 0;
  p.top_p = 0.3f;
  std::vector<double> pr = softmax_ref(logits);
  double cum = 0;
  uint32_t nucleus = 0;
  while (cum < 0.3) cum += pr[rank_to_id[nucleus++]];
  // The boundary must not sit within float rounding of top_p.
  REQUIRE(cum - 0.3 > 1e-6);
  REQUIRE(0.3 - (cum - pr[rank_to_id[nucleus - 1]]) > 1e-6);
  MESSAGE("flat nucleus of " << nucleus << " tokens");
  worst = worst_rank(p);
  CHECK(worst < nucleus);
  CHECK(worst + 40 >= nucleus);
}

TEST_CASE("sampler: top_k and top_p on exactly equal weights keep the lowest ids") {
  std::vector<float> equal(2000, 0.5f);
  auto max_id = [&](const SamplingParams& q) { return *drawn(histogram(equal, q, 4000)).rbegin(); };
  SamplingParams q;
  q.temperature = 1.0f;
  q.seed = 8;
  q.top_k = 1500;
  int32_t m = max_id(q);
  CHECK(m < 1500);
  CHECK(m >= 1480);
  q.top_k = 0;
  q.top_p = 0.75f;  // 1500 tokens reach 0.75 exactly; the 1501st has 0.75 before it: dropped
  m = max_id(q);
  CHECK(m < 1500);
  CHECK(m >= 1480);
}

TEST_CASE("sampler: top_k at or past the vocabulary is off") {
  std::vector<float> logits = {0.3f, 0.1f, 0.0f, 0.2f, -0.1f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 6;
  auto seq = [&](uint32_t k) {
    p.top_k = k;
    SamplerState s = fresh(5);
    std::vector<int32_t> out;
    for (int i = 0; i < 100; ++i) out.push_back(draw(logits, p, s).token);
    return out;
  };
  std::vector<int32_t> off = seq(0);
  CHECK(seq(5) == off);
  CHECK(seq(1000) == off);
  CHECK(seq(4) != off);  // token 4 can no longer be drawn
}

TEST_CASE("sampler: min_p keeps p >= min_p * p_max") {
  std::vector<double> probs = {0.1, 0.5, 0.2, 0.1, 0.1};
  std::vector<float> logits = logits_of(probs);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 21;
  struct Case {
    float min_p;
    std::set<int32_t> kept;
  };
  for (const Case& c : {Case{0.19f, {0, 1, 2, 3, 4}}, Case{0.21f, {1, 2}}, Case{0.39f, {1, 2}},
                        Case{0.41f, {1}}, Case{1.0f, {1}}}) {
    CAPTURE(c.min_p);
    p.min_p = c.min_p;
    std::vector<int> h = histogram(logits, p, 3000);
    CHECK(drawn(h) == c.kept);
    CHECK(chi_square(h, renormalised(probs, c.kept)) < kChi2Df4);
  }
}

TEST_CASE("sampler: filters combine: top_k, then top_p on the top_k distribution, then min_p") {
  // Probabilities 0.3, 0.25, 0.2, 0.15, 0.1 at ids 4, 0, 3, 1, 2.
  std::vector<double> probs = {0.25, 0.15, 0.1, 0.2, 0.3};
  std::vector<float> logits = logits_of(probs);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 4;
  p.top_k = 3;    // {4, 0, 3}: mass 0.75, renormalised 0.4, 0.333, 0.267
  p.top_p = 0.7f; // 0.4 < 0.7 <= 0.733: {4, 0} (on the unrenormalised mass it would be {4, 0, 3})
  CHECK(drawn(histogram(logits, p, 3000)) == std::set<int32_t>{4, 0});
  p.top_p = 0.75f;  // past 0.733: {4, 0, 3}
  CHECK(drawn(histogram(logits, p, 3000)) == std::set<int32_t>{4, 0, 3});
  p.min_p = 0.7f;   // 0.2 < 0.7 * 0.3: drops 3; 0.25 >= 0.21 keeps 0
  CHECK(drawn(histogram(logits, p, 3000)) == std::set<int32_t>{4, 0});
}

TEST_CASE("sampler: repetition penalty divides positive logits and multiplies negative ones") {
  SamplingParams p;  // greedy, so each case is decided by exact comparisons
  SUBCASE("positive logit, seen in the prompt (three times: applied once, HF)") {
    std::vector<float> logits = {1.0f, 2.0f};
    p.repetition_penalty = 2.0f;  // 2 / 2 == 1: a tie, lower id wins
    CHECK(greedy_once(logits, p, fresh(2, {1, 1, 1})) == 0);
    p.repetition_penalty = 1.99f;  // 2 / 1.99 > 1
    CHECK(greedy_once(logits, p, fresh(2, {1, 1, 1})) == 1);
    CHECK(greedy_once(logits, p, fresh(2, {0})) == 1);  // penalising the loser changes nothing
  }
  SUBCASE("negative logit, seen: multiplied, pushing it further down") {
    std::vector<float> logits = {-2.0f, -1.0f};
    p.repetition_penalty = 2.0f;  // -1 * 2 == -2: tie
    CHECK(greedy_once(logits, p, fresh(2, {1})) == 0);
    p.repetition_penalty = 1.99f;
    CHECK(greedy_once(logits, p, fresh(2, {1})) == 1);
    // Dividing a negative logit (the naive rule) would raise it; the seen token must lose.
    std::vector<float> close = {-1.1f, -1.0f};
    p.repetition_penalty = 1.2f;
    CHECK(greedy_once(close, p, fresh(2, {1})) == 0);
  }
  SUBCASE("a repeated greedy token loses to the next best, counting output tokens too") {
    std::vector<float> logits = {1.0f, 0.9f, -3.0f};
    p.repetition_penalty = 1.5f;
    SamplerState s = fresh(3);
    CHECK(draw(logits, p, s).token == 0);  // nothing seen yet
    CHECK(draw(logits, p, s).token == 1);  // 1 / 1.5 < 0.9
    CHECK(draw(logits, p, s).token == 0);  // both seen: 0.667 > 0.6
  }
  SUBCASE("penalty < 1 rewards seen tokens") {
    std::vector<float> logits = {1.0f, 0.8f};
    p.repetition_penalty = 0.5f;  // 0.8 / 0.5 = 1.6
    CHECK(greedy_once(logits, p, fresh(2, {1})) == 1);
  }
}

TEST_CASE("sampler: presence and frequency penalties, exactly, over output tokens only") {
  SamplingParams p;  // greedy; every case is a tie or a near miss of token 0's 0.25
  std::vector<float> logits = {0.25f, 1.0f};
  SamplerState s = fresh(2);
  s.output_counts[1] = 3;
  auto pick = [&](float pres, float freq) {
    p.presence_penalty = pres;
    p.frequency_penalty = freq;
    return greedy_once(logits, p, s);
  };
  CHECK(pick(0.75f, 0.0f) == 0);     // 1 - 0.75 == 0.25: presence once, not per occurrence
  CHECK(pick(0.7f, 0.0f) == 1);
  CHECK(pick(0.0f, 0.25f) == 0);     // 1 - 3 * 0.25 == 0.25: frequency times the count
  CHECK(pick(0.0f, 0.24f) == 1);
  CHECK(pick(0.375f, 0.125f) == 0);  // 1 - 0.375 - 0.375 == 0.25: both add up
  CHECK(pick(0.37f, 0.125f) == 1);

  // Negative penalties encourage: token 0 at 0.25 - 3 * -0.25 == 1.0 ties token 1.
  SamplerState s0 = fresh(2);
  s0.output_counts[0] = 3;
  p.presence_penalty = 0.0f;
  p.frequency_penalty = -0.25f;
  CHECK(greedy_once(logits, p, s0) == 0);
  p.frequency_penalty = -0.2f;
  CHECK(greedy_once(logits, p, s0) == 1);

  // Prompt tokens are not output: no presence or frequency penalty for them.
  p.presence_penalty = 2.0f;
  p.frequency_penalty = 2.0f;
  CHECK(greedy_once(logits, p, fresh(2, {1, 1, 1, 1})) == 1);
}

TEST_CASE("sampler: logprobs are of the raw logits, top alternatives best first, ties by id") {
  std::mt19937_64 rng(17);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  std::vector<float> logits(1000);
  for (float& x : logits) x = std::min(nd(rng), 8.0f);
  logits[900] = 9.0f;
  logits[10] = 9.0f;
  logits[500] = 8.5f;
  logits[20] = 8.5f;
  std::vector<double> ref = log_softmax_ref(logits);
  std::vector<int32_t> order(1000);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return ref[a] > ref[b]; });
  REQUIRE(order[0] == 10);
  REQUIRE(order[1] == 900);
  REQUIRE(order[2] == 20);
  REQUIRE(order[3] == 500);

  // Penalties and temperature shape the draw, never the reported logprobs.
  SamplingParams p;
  p.temperature = 0.7f;
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.5f;
  p.logprobs = 7;
  SamplerState s = fresh(1000, {10, 20, 30});
  for (int step = 0; step < 20; ++step) {
    p.seed = step;
    SampleResult r = draw(logits, p, s);
    CHECK(std::fabs(r.logprob - ref[r.token]) < 1e-5);
    REQUIRE(r.top.size() == 7);
    for (size_t j = 0; j < r.top.size(); ++j) {
      CHECK(r.top[j].token == order[j]);
      CHECK(std::fabs(r.top[j].logprob - ref[order[j]]) < 1e-5);
    }
  }

  SamplerState g = fresh(1000);
  p.temperature = 0.0f;
  p.logprobs = 0;
  SampleResult r = draw(logits, p, g);
  CHECK(r.token == 10);
  CHECK(r.top.empty());
  CHECK(std::fabs(r.logprob - ref[10]) < 1e-5);

  // Asking for more alternatives than the vocabulary has returns the whole vocabulary.
  std::vector<float> small = {0.0f, 1.0f, 2.0f};
  SamplerState t = fresh(3);
  p.logprobs = 20;
  r = draw(small, p, t);
  REQUIRE(r.top.size() == 3);
  CHECK(r.top[0].token == 2);
  CHECK(r.top[2].token == 0);
  std::vector<double> sref = log_softmax_ref(small);
  for (const auto& tl : r.top) CHECK(std::fabs(tl.logprob - sref[tl.token]) < 1e-6);
}

TEST_CASE("sampler: NaN logits are never chosen, +inf logits always are") {
  std::vector<float> logits = {kNaN, 1.0f, 2.0f, kNaN, -kInf};
  SamplingParams p;
  p.logprobs = 5;
  SamplerState s = fresh(5);
  SampleResult r = draw(logits, p, s);
  CHECK(r.token == 2);
  REQUIRE(r.top.size() == 5);
  CHECK(r.top[0].token == 2);
  CHECK(r.top[1].token == 1);
  CHECK(r.top[4].logprob == -kInf);  // NaN ranks as -inf
  p.temperature = 3.0f;
  p.logprobs = 0;
  std::vector<int> h = histogram(logits, p, 2000);
  CHECK(drawn(h) == std::set<int32_t>{1, 2});

  std::vector<float> inf = {0.0f, kInf, 1e30f, kInf};
  h = histogram(inf, p, 2000);
  CHECK(drawn(h) == std::set<int32_t>{1, 3});
  CHECK(std::abs(h[1] - 1000) < 150);
  SamplerState t = fresh(4);
  r = draw(inf, p, t);
  CHECK(r.logprob == doctest::Approx(-std::log(2.0)));
  p.temperature = 0.0f;
  CHECK(greedy_once(inf, p, fresh(4)) == 1);

  std::vector<float> nan(4, kNaN);
  SamplerState u = fresh(4);
  CHECK_THROWS_WITH_AS(draw(nan, p, u), "logits are all NaN", std::invalid_argument);
  std::vector<float> masked = {-kInf, kNaN, -kInf};
  SamplerState v = fresh(3);
  CHECK_THROWS_AS(draw(masked, p, v), std::invalid_argument);
  CHECK(u.output_index == 0);
  CHECK(v.output_index == 0);
}

TEST_CASE("sampler: validate names the field and value and sample throws it") {
  auto msg = [](auto edit) {
    SamplingParams p;
    edit(p);
    return validate(p);
  };
  CHECK(validate(SamplingParams{}).empty());
  CHECK(msg([](SamplingParams& p) { p.temperature = -1.0f; }) == "temperature = -1: must be finite and >= 0");
  CHECK(msg([](SamplingParams& p) { p.temperature = kNaN; }) == "temperature = nan: must be finite and >= 0");
  CHECK(msg([](SamplingParams& p) { p.temperature = kInf; }) == "temperature = inf: must be finite and >= 0");
  CHECK(msg([](SamplingParams& p) { p.top_p = 1.5f; }) == "topP = 1.5: must be in (0, 1]");
  CHECK(msg([](SamplingParams& p) { p.top_p = 0.0f; }) == "topP = 0: must be in (0, 1]");
  CHECK(msg([](SamplingParams& p) { p.top_p = kNaN; }) == "topP = nan: must be in (0, 1]");
  CHECK(msg([](SamplingParams& p) { p.min_p = -0.1f; }) == "minP = -0.1: must be in [0, 1]");
  CHECK(msg([](SamplingParams& p) { p.min_p = 1.5f; }) == "minP = 1.5: must be in [0, 1]");
  CHECK(msg([](SamplingParams& p) { p.repetition_penalty = 0.0f; }) == "repetitionPenalty = 0: must be finite and > 0");
  CHECK(msg([](SamplingParams& p) { p.repetition_penalty = kInf; }) == "repetitionPenalty = inf: must be finite and > 0");
  CHECK(msg([](SamplingParams& p) { p.presence_penalty = 2.5f; }) == "presencePenalty = 2.5: must be in [-2, 2]");
  CHECK(msg([](SamplingParams& p) { p.presence_penalty = kNaN; }) == "presencePenalty = nan: must be in [-2, 2]");
  CHECK(msg([](SamplingParams& p) { p.frequency_penalty = -3.0f; }) == "frequencyPenalty = -3: must be in [-2, 2]");
  CHECK(msg([](SamplingParams& p) { p.logprobs = 21; }) == "logprobs = 21: must be at most 20");

  // The edges are allowed.
  CHECK(msg([](SamplingParams& p) {
          p.temperature = 100.0f;
          p.top_k = 1u << 31;
          p.top_p = 1.0f;
          p.min_p = 1.0f;
          p.repetition_penalty = 0.01f;
          p.presence_penalty = -2.0f;
          p.frequency_penalty = 2.0f;
          p.logprobs = 20;
        }).empty());
  CHECK(msg([](SamplingParams& p) { p.min_p = 0.0f; p.top_p = 1e-6f; }).empty());

  std::vector<float> logits = {0.0f, 1.0f};
  SamplingParams p;
  p.top_p = 1.5f;
  SamplerState s = fresh(2);
  CHECK_THROWS_WITH_AS(draw(logits, p, s), "topP = 1.5: must be in (0, 1]", std::invalid_argument);
  CHECK(s.output_index == 0);
  CHECK(s.output_counts == std::vector<uint32_t>{0, 0});
}

TEST_CASE("sampler: a state sized for another vocabulary is refused") {
  std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  SamplingParams p;
  SamplerState never_reset;
  CHECK_THROWS_AS(draw(logits, p, never_reset), std::invalid_argument);
  SamplerState other = fresh(2);
  CHECK_THROWS_AS(draw(logits, p, other), std::invalid_argument);
  CHECK_THROWS_AS(sample(logits.data(), 0, p, other), std::invalid_argument);
}

TEST_CASE("sampler: timing over a 128256-token vocabulary") {
  const uint32_t V = 128256;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> peaked(V);  // an LLM-like row: a noisy floor and a few strong candidates
  for (float& x : peaked) x = nd(rng);
  for (int i = 0; i < 20; ++i) peaked[(i * 7919u) % V] = 14.0f - 0.5f * i;
  std::vector<float> flat(V);  // worst case for top_p: the nucleus is most of the vocabulary
  for (float& x : flat) x = 0.01f * nd(rng);

  struct Config {
    const char* name;
    const std::vector<float>* logits;
    SamplingParams p;
  };
  auto make = [](float t, uint32_t k, float tp, float mp, float rep, uint32_t lp) {
    SamplingParams p;
    p.temperature = t;
    p.top_k = k;
    p.top_p = tp;
    p.min_p = mp;
    p.repetition_penalty = rep;
    p.presence_penalty = rep != 1.0f ? 0.3f : 0.0f;
    p.frequency_penalty = rep != 1.0f ? 0.3f : 0.0f;
    p.logprobs = lp;
    p.seed = 1;
    return p;
  };
  std::vector<int32_t> prompt(2000);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 104729u) % V);
  const Config configs[] = {
      {"greedy", &peaked, make(0.0f, 0, 1.0f, 0.0f, 1.0f, 0)},
      {"temperature 0.8", &peaked, make(0.8f, 0, 1.0f, 0.0f, 1.0f, 0)},
      {"top_k 50 + top_p 0.95", &peaked, make(0.8f, 50, 0.95f, 0.0f, 1.0f, 0)},
      {"top_p 0.9", &peaked, make(1.0f, 0, 0.9f, 0.0f, 1.0f, 0)},
      {"min_p 0.05", &peaked, make(1.0f, 0, 1.0f, 0.05f, 1.0f, 0)},
      {"penalties + top_p 0.9 + 5 logprobs", &peaked, make(0.8f, 0, 0.9f, 0.0f, 1.1f, 5)},
      {"top_p 0.95, flat distribution", &flat, make(1.0f, 0, 0.95f, 0.0f, 1.0f, 0)},
  };
  for (const Config& c : configs) {
    SamplerState s = fresh(V, prompt);
    for (int i = 0; i < 5; ++i) draw(*c.logits, c.p, s);
    const int n = 100;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) draw(*c.logits, c.p, s);
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
    MESSAGE("sample() over " << V << " tokens, " << std::string(c.name) << ": " << us << " us");
  }
}

TEST_CASE("sample_step: a pool samples the same tokens as one thread, and a failed row advances no state") {
  constexpr uint32_t V = 1000;
  constexpr size_t kRows = 9;
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> logits(kRows * V);
  for (float& x : logits) x = dist(rng);
  std::vector<SamplingParams> params(kRows);
  for (size_t i = 0; i < kRows; ++i) {
    params[i].temperature = i % 3 == 0 ? 0.0f : 0.8f;
    params[i].top_p = 0.9f;
    params[i].seed = 100 + i;
  }
  const int32_t prompt[] = {1, 2, 3};
  auto run = [&](fineserve::engine::ThreadPool* pool, std::vector<float> rows, std::vector<SamplerState>& states) {
    states.assign(kRows, SamplerState{});
    std::vector<SequenceChunk> batch(kRows + 1);
    for (size_t i = 0; i < kRows; ++i) {
      states[i].reset(V, prompt, 3);
      batch[i].sampling = &params[i];
      batch[i].sampler_state = &states[i];
    }
    batch[kRows].sample = false;  // a prefill chunk in the middle of the batch: no logits row
    std::rotate(batch.begin() + 4, batch.begin() + kRows, batch.end());
    std::vector<int32_t> tokens;
    fineserve::engine::StepOutput out = fineserve::engine::sample_step(batch, rows, V, false, pool);
    for (const auto& s : out.samples) tokens.push_back(s.token);
    return tokens;
  };
  std::vector<SamplerState> one, two;
  fineserve::engine::ThreadPool pool(2);
  const std::vector<int32_t> serial = run(nullptr, logits, one);
  CHECK(serial == run(&pool, logits, two));
  CHECK(serial[4] == -1);
  for (size_t i = 0; i < kRows; ++i) CHECK(two[i].output_index == 1);

  // Row 6 all NaN: the step throws that row's error and every state is as before the step.
  std::vector<float> bad = logits;
  std::fill(bad.begin() + 6 * V, bad.begin() + 7 * V, std::numeric_limits<float>::quiet_NaN());
  for (fineserve::engine::ThreadPool* p : {static_cast<fineserve::engine::ThreadPool*>(nullptr), &pool}) {
    std::vector<SamplerState> states;
    CHECK_THROWS_WITH_AS(run(p, bad, states), "logits are all NaN", std::invalid_argument);
    for (const SamplerState& s : states) {
      CHECK(s.output_index == 0);
      CHECK(std::all_of(s.output_counts.begin(), s.output_counts.end(), [](uint32_t c) { return c == 0; }));
    }
  }
}
