#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <locale>
#include <sstream>
#include <stdexcept>

#include "simd/exp_poly.h"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FINESERVE_SAMPLER_SSE2 1
#endif

// The pipeline follows vLLM's sampler (and HF transformers' warper order), so a request behaves
// the way users of those servers expect:
//   1. logits are copied to scratch (the caller's buffer is const and may be reused for
//      return_logits); NaN counts as -inf.
//   2. repetition penalty over prompt + output tokens, HF/CTRL rule: logit > 0 ? logit / p
//      : logit * p (so a seen token always becomes less likely, whatever the logit's sign),
//      applied once however often the token was seen.
//   3. frequency then presence penalty over output tokens only (OpenAI): logit -= f * count,
//      then logit -= presence if count > 0. vLLM's order and float arithmetic, so a penalised
//      logit matches it bit for bit.
//   4. temperature < 1e-5 is greedy (vLLM's _SAMPLING_EPS: dividing by a tinier temperature
//      overflows); argmax ties go to the lowest token id, as torch.argmax does.
//   5. otherwise logits / temperature, softmax with max subtraction, then top_k, top_p on the
//      top_k-renormalised distribution, min_p (HF's order, and vLLM v0's), renormalise, draw.
// Logprobs are always of the raw logits (vLLM's default), not of the penalised, tempered or
// truncated distribution the token was drawn from.

namespace fineserve::engine {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr uint32_t kMaxLogprobs = 20;  // vLLM's default max_logprobs
constexpr float kGreedyBelow = 1e-5f;  // vLLM's _SAMPLING_EPS

std::string bad(const char* field, double value, const char* why) {
  std::ostringstream os;
  os.imbue(std::locale::classic());  // "1.5", never "1,5"
  os << field << " = " << value << ": " << why;
  return os.str();
}

// --- the random draw ----------------------------------------------------------------------------

// SplitMix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer that passes
// BigCrush when fed a Weyl sequence.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // SplitMix64's Weyl increment

// The uniform number for output token `index` of a request with `seed`: output index + 1 of a
// SplitMix64 stream whose start is itself a mix of the seed. Counter-based, so it depends on
// nothing but (seed, index): a request draws the same numbers alone, in any batch, on any
// thread, and when a preempted request is replayed. Mixing the seed first keeps seeds s and
// s + kGolden from sharing a shifted stream. 53 bits, so 1.0 is never returned.
double uniform01(uint64_t seed, uint64_t index) {
  uint64_t start = mix64(seed + kGolden);
  uint64_t bits = mix64(start + (index + 1) * kGolden);
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// --- exp over a vocabulary ----------------------------------------------------------------------

// exp over a row by simd/exp_poly.h's method. libm's expf is scalar and was most of the time on a
// 128k row; this runs four lanes of plain SSE2, which every x86-64 has, so the baseline build
// needs no dispatch. A masked token has weight 0, and so does one below e^-87.7 relative to the
// best, which could never be drawn anyway.
using namespace simd::exp_poly;

// out[i] = exp(x[i] - m), for m >= every x[i] and finite.
void exp_shifted(const float* x, float m, float* out, size_t n) {
  size_t i = 0;
#if FINESERVE_SAMPLER_SSE2
  const __m128 vm = _mm_set1_ps(m), lo = _mm_set1_ps(kLo), log2e = _mm_set1_ps(kLog2e),
               round = _mm_set1_ps(kRound), hi = _mm_set1_ps(kLn2Hi), lo2 = _mm_set1_ps(kLn2Lo),
               one = _mm_set1_ps(1.0f);
  const __m128i round_bits = _mm_set1_epi32(kRoundBits - 127);
  for (; i + 4 <= n; i += 4) {
    // max_ps(v, lo) returns lo when v is NaN; the caller already turned NaN into -inf.
    __m128 v = _mm_max_ps(_mm_sub_ps(_mm_loadu_ps(x + i), vm), lo);
    __m128 k = _mm_add_ps(_mm_mul_ps(v, log2e), round);
    __m128 nf = _mm_sub_ps(k, round);
    __m128 r = _mm_sub_ps(v, _mm_mul_ps(nf, hi));
    r = _mm_sub_ps(r, _mm_mul_ps(nf, lo2));
    __m128 p = _mm_set1_ps(kP0);
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(kP1));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(kP2));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(kP3));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(kP4));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(kP5));
    __m128 y = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_mul_ps(p, r), r), r), one);
    __m128i sbits = _mm_slli_epi32(_mm_sub_epi32(_mm_castps_si128(k), round_bits), 23);
    _mm_storeu_ps(out + i, _mm_mul_ps(y, _mm_castsi128_ps(sbits)));
  }
#endif
  for (; i < n; ++i) out[i] = exp_nonpos(x[i] - m);
}

// Four accumulators: one chain of dependent double adds is latency-bound at 128k terms.
double sum_f64(const float* e, size_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += e[i];
    s1 += e[i + 1];
    s2 += e[i + 2];
    s3 += e[i + 3];
  }
  for (; i < n; ++i) s0 += e[i];
  return (s0 + s1) + (s2 + s3);
}

// --- candidate selection ------------------------------------------------------------------------

// One token as the filters see it. `better` is a strict total order -- weight descending, then
// lower id first -- so nth_element and sort pick the same set however they are implemented,
// and ties at a top_k / top_p boundary go to the lower id.
struct Cand {
  float e;  // unnormalised probability exp(logit - max), in [0, 1]
  int32_t id;
};
bool better(const Cand& a, const Cand& b) { return a.e > b.e || (a.e == b.e && a.id < b.id); }

// Weights are non-negative floats, which order like their bit patterns. Selection is a radix
// select on those bits, most significant digit first: a histogram of one digit says which
// digit value holds the boundary; tokens above it are kept outright, tokens below are dropped,
// and only the boundary digit's tokens go on to the next digit. The first digit (exponent and
// 3 mantissa bits) makes buckets 2^(1/8) wide, so on a real row the boundary range is a few
// dozen tokens after one pass; a nearly flat row needs the finer digits, and nothing is ever
// sorted beyond kSortBelow tokens unless the weights are exactly equal.
struct Digit {
  int shift;
  uint32_t size;
};
constexpr Digit kDigits[] = {{20, 1u << 12}, {8, 1u << 12}, {0, 1u << 8}};
constexpr size_t kSortBelow = 1024;
uint32_t bits_of(float e) {
  uint32_t b;
  std::memcpy(&b, &e, sizeof b);
  return b;
}

// Per thread: a 128k vocabulary would otherwise allocate ~1.5 MB per token. Executors sample
// from worker threads, and each state belongs to one request, so nothing here is shared.
struct Scratch {
  std::vector<float> work;    // penalised, tempered logits
  std::vector<float> e;       // weights by token id; 0 for tokens filtered out
  std::vector<Cand> cand;     // top_k / top_p candidates
  std::vector<double> block;  // per-block weight sums for the draw
  std::vector<uint32_t> count;
  std::vector<double> mass;
};
thread_local Scratch t_scratch;

// Moves the kept best of c[0, n) to the front and returns how many they are: exactly `need`
// (top_k), or with by_mass the minimal prefix in `better` order whose weight reaches `target`
// (top_p: HF and vLLM drop tokens whose ascending cumulative probability is <= 1 - top_p,
// i.e. best first a token is kept while the mass before it is < top_p).
size_t keep_best(Cand* c, size_t n, bool by_mass, size_t need, double target, Scratch& s) {
  size_t r0 = 0, r1 = n;  // c[0, r0) kept; c[r0, r1) the undecided boundary range
  double cum = 0.0;       // weight of c[0, r0)
  for (const Digit& d : kDigits) {
    if (r1 - r0 <= kSortBelow) break;
    s.count.assign(d.size, 0);
    if (by_mass) s.mass.assign(d.size, 0.0);
    const uint32_t mask = d.size - 1;
    auto digit = [&](const Cand& x) { return (bits_of(x.e) >> d.shift) & mask; };
    for (size_t i = r0; i < r1; ++i) {
      uint32_t k = digit(c[i]);
      ++s.count[k];
      if (by_mass) s.mass[k] += c[i].e;
    }
    // The boundary digit: the first, from the top, whose tokens reach the goal.
    uint32_t kb = 0;
    bool found = false;
    size_t cnt = r0;
    double m = cum;
    for (uint32_t k = d.size; k-- > 0;) {
      if (by_mass ? m + s.mass[k] >= target : cnt + s.count[k] >= need) {
        kb = k;
        found = true;
        break;
      }
      cnt += s.count[k];
      if (by_mass) m += s.mass[k];
    }
    // Only rounding can leave the goal unreached: everything in range is then kept.
    if (!found) return r1;
    Cand* above_end = std::partition(c + r0, c + r1, [&](const Cand& x) { return digit(x) > kb; });
    Cand* at_end = std::partition(above_end, c + r1, [&](const Cand& x) { return digit(x) == kb; });
    r0 = static_cast<size_t>(above_end - c);
    r1 = static_cast<size_t>(at_end - c);
    cum = m;
  }
  if (!by_mass) {
    std::nth_element(c + r0, c + (need - 1), c + r1, better);
    return need;
  }
  std::sort(c + r0, c + r1, better);
  for (size_t j = r0; j < r1; ++j) {
    cum += c[j].e;
    if (cum >= target) return j + 1;
  }
  return r1;
}

// Zeroes e[] outside the tokens top_k and top_p keep. total_all: the sum of e[] over all V.
void select_top(const SamplingParams& p, bool top_k_on, bool top_p_on, double total_all,
                Scratch& s, size_t V) {
  float* e = s.e.data();
  // A first, cheap pass over the whole row: only tokens at or above the first digit bucket that
  // can hold the boundary become candidates. Four interleaved histograms: a row of mostly
  // equal weights would otherwise stall on store-to-load forwarding into one counter.
  constexpr uint32_t kB = kDigits[0].size;
  s.count.assign(4 * kB, 0);
  uint32_t* h = s.count.data();
  const int sh = kDigits[0].shift;
  size_t i = 0;
  for (; i + 4 <= V; i += 4) {
    ++h[bits_of(e[i]) >> sh];
    ++h[kB + (bits_of(e[i + 1]) >> sh)];
    ++h[2 * kB + (bits_of(e[i + 2]) >> sh)];
    ++h[3 * kB + (bits_of(e[i + 3]) >> sh)];
  }
  for (; i < V; ++i) ++h[bits_of(e[i]) >> sh];
  // With top_k: the k-th best's bucket (top_p then only looks inside the top k). With top_p
  // alone: the first bucket at which a lower bound of the mass from the top (count times the
  // bucket's smallest weight) reaches top_p; the true nucleus ends no lower.
  const double target_all = static_cast<double>(p.top_p) * total_all;
  uint32_t lo = 0;
  uint64_t count = 0;
  double mass = 0.0;
  for (uint32_t b = kB; b-- > 0;) {
    uint32_t c = h[b] + h[kB + b] + h[2 * kB + b] + h[3 * kB + b];
    if (c == 0) continue;
    count += c;
    uint32_t floor_bits = b << sh;
    float floor_e;
    std::memcpy(&floor_e, &floor_bits, sizeof floor_e);
    mass += static_cast<double>(c) * floor_e;
    if (top_k_on ? count >= p.top_k : mass >= target_all) {
      lo = b;
      break;
    }
  }
  const uint32_t lo_bits = lo << sh;
  s.cand.resize(V);
  Cand* c = s.cand.data();
  size_t n = 0;
  for (size_t j = 0; j < V; ++j) {
    if (bits_of(e[j]) >= lo_bits) c[n++] = Cand{e[j], static_cast<int32_t>(j)};
  }

  if (top_k_on && n > p.top_k) n = keep_best(c, n, false, p.top_k, 0.0, s);
  if (top_p_on) {
    double total = total_all;
    if (top_k_on) {  // renormalised over the top k
      total = 0.0;
      for (size_t j = 0; j < n; ++j) total += c[j].e;
    }
    n = keep_best(c, n, true, 0, static_cast<double>(p.top_p) * total, s);
  }
  std::fill(e, e + V, 0.0f);
  for (size_t j = 0; j < n; ++j) e[c[j].id] = c[j].e;
}

// Inverse CDF over the weights in token id order: the token depends only on the kept weights
// and u, not on how selection permuted candidates. Block sums make it O(V / kBlock) to find the
// block and O(kBlock) inside it instead of a serial walk over the whole row.
int32_t draw_token(const float* e, size_t V, double u, std::vector<double>& block) {
  constexpr size_t kBlock = 1024;
  const size_t nb = (V + kBlock - 1) / kBlock;
  block.resize(nb);
  double total = 0.0;
  for (size_t b = 0; b < nb; ++b) {
    block[b] = sum_f64(e + b * kBlock, std::min(kBlock, V - b * kBlock));
    total += block[b];
  }
  const double target = u * total;
  double cum = 0.0;
  size_t chosen = nb, last_block = 0;
  for (size_t b = 0; b < nb; ++b) {
    if (block[b] <= 0.0) continue;
    last_block = b;
    if (cum + block[b] > target) {
      chosen = b;
      break;
    }
    cum += block[b];
  }
  if (chosen == nb) {
    // u * total rounded up to total: the draw belongs to the last token with weight.
    for (size_t i = std::min(V, (last_block + 1) * kBlock); i-- > last_block * kBlock;) {
      if (e[i] > 0.0f) return static_cast<int32_t>(i);
    }
  }
  // If the block's serial sum falls a hair short of its sum_f64, its last token with weight
  // gets the remainder.
  const size_t begin = chosen * kBlock, end = std::min(V, begin + kBlock);
  int32_t last = -1;
  for (size_t i = begin; i < end; ++i) {
    if (e[i] <= 0.0f) continue;
    cum += e[i];
    last = static_cast<int32_t>(i);
    if (cum > target) break;
  }
  return last;
}

// The log-softmax of the raw logits, NaN as -inf. A +inf logit is the limit of a huge one: the
// +inf tokens share all the mass and everything else has none.
struct RawLogSoftmax {
  double lse = 0.0;  // log-sum-exp when the maximum is finite
  uint32_t n_pos_inf = 0;
  float operator()(float x) const {
    if (std::isnan(x)) return -kInf;
    if (n_pos_inf > 0) return x == kInf ? static_cast<float>(-std::log(double(n_pos_inf))) : -kInf;
    return static_cast<float>(static_cast<double>(x) - lse);
  }
};

// The n best raw logits, best first, ties to the lower id (a stable sort by logprob). A small
// insertion-sorted buffer: one O(V) pass, and on a real row almost nothing is inserted after
// the first few hundred tokens.
std::vector<TokenLogprob> top_raw(const float* logits, uint32_t vocab, uint32_t n,
                                  const RawLogSoftmax& lsm) {
  std::vector<TokenLogprob> top;  // .logprob holds the cleaned raw logit until the end
  if (n == 0) return top;
  top.reserve(n + 1);
  for (uint32_t i = 0; i < vocab; ++i) {
    float x = std::isnan(logits[i]) ? -kInf : logits[i];
    if (top.size() == n && !(x > top.back().logprob)) continue;
    // Ids arrive ascending, so an equal logit already in the buffer has the lower id and stays
    // ahead: insert after every entry >= x.
    auto at = std::find_if(top.begin(), top.end(), [x](const TokenLogprob& t) { return x > t.logprob; });
    top.insert(at, TokenLogprob{static_cast<int32_t>(i), x});
    if (top.size() > n) top.pop_back();
  }
  for (TokenLogprob& t : top) t.logprob = lsm(t.logprob);
  return top;
}

}  // namespace

void SamplerState::reset(uint32_t vocab_size, const int32_t* prompt, uint32_t prompt_len) {
  prompt_counts.assign(vocab_size, 0);
  output_counts.assign(vocab_size, 0);
  output_index = 0;
  if (prompt == nullptr) return;
  for (uint32_t j = 0; j < prompt_len; ++j) {
    // The executor rejects out-of-vocabulary tokens before this is reached; skipping them here
    // keeps a careless caller from writing out of bounds.
    int32_t t = prompt[j];
    if (t >= 0 && static_cast<uint32_t>(t) < vocab_size) ++prompt_counts[t];
  }
}

std::string validate(const SamplingParams& p) {
  // Each test is written so that NaN fails it.
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f)) {
    return bad("temperature", p.temperature, "must be finite and >= 0");
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return bad("topP", p.top_p, "must be in (0, 1]");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return bad("minP", p.min_p, "must be in [0, 1]");
  if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f)) {
    return bad("repetitionPenalty", p.repetition_penalty, "must be finite and > 0");
  }
  // OpenAI's range; beyond it a penalty swamps any logit a model produces.
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return bad("presencePenalty", p.presence_penalty, "must be in [-2, 2]");
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return bad("frequencyPenalty", p.frequency_penalty, "must be in [-2, 2]");
  }
  if (p.logprobs > kMaxLogprobs) return bad("logprobs", p.logprobs, "must be at most 20");
  return "";
}

SampleResult sample(const float* logits, uint32_t vocab_size, const SamplingParams& params,
                    SamplerState& state) {
  std::string err = validate(params);
  if (!err.empty()) throw std::invalid_argument(err);
  if (vocab_size == 0 || logits == nullptr) throw std::invalid_argument("sample: no logits (vocabulary of 0)");
  if (state.prompt_counts.size() != vocab_size || state.output_counts.size() != vocab_size) {
    // A state sized for another vocabulary (or never reset) would index out of bounds, or
    // silently lose the prompt's repetition counts.
    throw std::invalid_argument("sample: sampler state is sized for " +
                                std::to_string(state.output_counts.size()) + " tokens, logits for " +
                                std::to_string(vocab_size) + "; reset() it with the vocabulary size");
  }
  const size_t V = vocab_size;
  Scratch& s = t_scratch;
  s.work.resize(V);
  s.e.resize(V);
  float* w = s.work.data();
  float* e = s.e.data();

  // 1. Copy with NaN as -inf.
  float raw_max = -kInf;
  size_t n_nan = 0;
  for (size_t i = 0; i < V; ++i) {
    float x = logits[i];
    bool nan = std::isnan(x);
    n_nan += nan;
    x = nan ? -kInf : x;
    w[i] = x;
    raw_max = x > raw_max ? x : raw_max;
  }
  if (n_nan == V) throw std::invalid_argument("logits are all NaN");
  // torch.multinomial refuses such a row too; answering token 0 would invent a token.
  if (raw_max == -kInf) throw std::invalid_argument("logits are all -inf or NaN: no token can be sampled");

  const float rep = params.repetition_penalty;
  const float freq = params.frequency_penalty;
  const float pres = params.presence_penalty;
  const float temp = params.temperature;
  const bool penalised = rep != 1.0f || freq != 0.0f || pres != 0.0f;
  const bool greedy = temp < kGreedyBelow;
  // Untouched logits at temperature 1: the sampling softmax is the raw one, computed once.
  const bool raw_is_sampling = !greedy && !penalised && temp == 1.0f;

  RawLogSoftmax lsm;
  if (raw_max == kInf) {
    for (size_t i = 0; i < V; ++i) lsm.n_pos_inf += (w[i] == kInf);
  } else if (!raw_is_sampling) {
    exp_shifted(w, raw_max, e, V);
    lsm.lse = static_cast<double>(raw_max) + std::log(sum_f64(e, V));
  }

  // 2-3. Penalties.
  if (penalised) {
    const uint32_t* pc = state.prompt_counts.data();
    const uint32_t* oc = state.output_counts.data();
    for (size_t i = 0; i < V; ++i) {
      if ((pc[i] | oc[i]) == 0) continue;
      if (rep != 1.0f) w[i] = w[i] > 0.0f ? w[i] / rep : w[i] * rep;
      if (oc[i] != 0) {
        w[i] -= freq * static_cast<float>(oc[i]);
        w[i] -= pres;
      }
    }
  }

  int32_t token = -1;
  if (greedy) {
    // 4. Strict > keeps the first (lowest id) of equal maxima.
    float best = -kInf;
    for (size_t i = 0; i < V; ++i) {
      if (w[i] > best) {
        best = w[i];
        token = static_cast<int32_t>(i);
      }
    }
    // Only reachable when a penalty overflowed every finite logit to -inf.
    if (token < 0) throw std::invalid_argument("logits are all -inf after penalties: no token can be sampled");
  } else {
    // 5. Division, not multiplication by 1/T: the same rounding as vLLM.
    if (temp != 1.0f) {
      for (size_t i = 0; i < V; ++i) w[i] /= temp;
    }
    float m = -kInf;
    for (size_t i = 0; i < V; ++i) m = w[i] > m ? w[i] : m;
    if (m == -kInf) throw std::invalid_argument("logits are all -inf after penalties: no token can be sampled");
    if (m == kInf) {
      for (size_t i = 0; i < V; ++i) e[i] = w[i] == kInf ? 1.0f : 0.0f;
    } else {
      exp_shifted(w, m, e, V);
    }
    const double total_all = sum_f64(e, V);
    if (raw_is_sampling && m != kInf) lsm.lse = static_cast<double>(m) + std::log(total_all);

    const bool top_k_on = params.top_k > 0 && params.top_k < V;
    const bool top_p_on = params.top_p < 1.0f;
    if (top_k_on || top_p_on) select_top(params, top_k_on, top_p_on, total_all, s, V);
    // min_p: keep p >= min_p * p_max. Weights are p times a common factor and the best one is
    // exactly 1 (exp(0), or a +inf token's 1), so the threshold is min_p itself. Applied after
    // top_k / top_p, whose survivors always include the best token.
    const float min_e = params.min_p;
    if (min_e > 0.0f) {
      for (size_t i = 0; i < V; ++i) e[i] = e[i] < min_e ? 0.0f : e[i];
    }
    token = draw_token(e, V, uniform01(params.seed, state.output_index), s.block);
    // The best token always keeps weight 1, so this is a bug, not bad input.
    if (token < 0) throw std::logic_error("sample: no token kept a positive weight");
  }

  SampleResult r;
  r.token = token;
  r.logprob = lsm(logits[token]);
  r.top = top_raw(logits, vocab_size, std::min(params.logprobs, vocab_size), lsm);
  record_sample(state, token);
  return r;
}

bool is_plain_greedy(const SamplingParams& p) {
  return p.temperature < kGreedyBelow && p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f &&
         p.frequency_penalty == 0.0f && p.logprobs == 0;
}

void record_sample(SamplerState& state, int32_t token) {
  ++state.output_counts[static_cast<size_t>(token)];
  ++state.output_index;
}

void unrecord_sample(SamplerState& state, int32_t token) {
  --state.output_counts[static_cast<size_t>(token)];
  --state.output_index;
}

}  // namespace fineserve::engine
