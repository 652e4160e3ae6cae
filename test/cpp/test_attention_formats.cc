// Paged attention in every KV format against a float64 attention computed here: (a) over the values
// as the cache stores them, decoded by this file's own code from the block bytes (only f32
// rounding may differ), and (b) over the original values, within a bound derived from each
// format's step. GQA (8 query heads over 2 KV heads), blocks of 4 tokens given out of order, a
// partial last block, head_dim 8, 64 and 128, rows written by a prefill step then a decode step.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/thread_pool.h"
#include "kv/kv_codec.h"
#include "kv/kv_geometry.h"
#include "ops/attention.h"
#include "quant/fp8.h"
#include "simd/half.h"

using namespace fineserve;
using kv::KvFormat;

namespace {

constexpr uint8_t kSentinel = 0xA5;
constexpr uint32_t kHeads = 8, kKvHeads = 2, kTpb = 4, kLayers = 2, kLayer = 1;

// IEEE binary16 by its definition.
double f16_bits_to_double(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) return mant == 0 ? sign * INFINITY : NAN;
  return sign * std::ldexp(1024 + mant, exp - 25);
}

double bf16_bits_to_double(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The documented layout (kv_geometry.h), worked out here rather than taken from KvLayout. int4's
// K region holds per-channel params ([heads][2][d] f16) where the others hold per-token scales,
// fp8's K region its per-channel references ([heads][d] f16).
struct Offsets {
  uint64_t d, row_bytes, data_bytes, scale_offset, region, v_region, params_bytes = 0;
  Offsets(uint32_t head_dim, KvFormat f) : d(head_dim) {
    row_bytes = head_dim * kv::bits_per_element(f) / 8;
    data_bytes = uint64_t{kKvHeads} * kTpb * row_bytes;
    scale_offset = (data_bytes + 7) / 8 * 8;
    uint64_t end = kv::default_scale_bytes(f) ? scale_offset + uint64_t{kKvHeads} * kTpb * 2 : data_bytes;
    v_region = (end + 63) / 64 * 64;
    if (f == KvFormat::Int4) params_bytes = 4 * head_dim;
    if (f == KvFormat::Fp8E4M3) params_bytes = 2 * head_dim;
    if (params_bytes) end = scale_offset + uint64_t{kKvHeads} * params_bytes;
    region = (end + 63) / 64 * 64;
  }
  uint64_t row(uint32_t layer, uint32_t k_or_v, uint32_t head, uint32_t slot) const {
    return layer * (region + v_region) + k_or_v * region + (uint64_t{head} * kTpb + slot) * row_bytes;
  }
  uint64_t scale(uint32_t layer, uint32_t k_or_v, uint32_t head, uint32_t slot) const {
    return layer * (region + v_region) + k_or_v * region + scale_offset + (uint64_t{head} * kTpb + slot) * 2;
  }
  // int4 K: channel c's step, its minimum 2 * d bytes further; fp8 K: channel c's reference.
  uint64_t k_step(uint32_t layer, uint32_t head, uint32_t c) const {
    return layer * (region + v_region) + scale_offset + uint64_t{head} * params_bytes + 2 * c;
  }
};

// int4 K row `slot` of a head, from its block's rows and params by the format's definition:
// x = minimum + step * q, q the unsigned nibble (element 2i low, 2i + 1 high).
std::vector<double> decode_k4(const uint8_t* rows, const uint8_t* params, uint32_t d, uint32_t slot) {
  std::vector<double> out(d);
  for (uint32_t i = 0; i < d; ++i) {
    const int nib = (rows[slot * d / 2 + i / 2] >> (4 * (i % 2))) & 0xF;
    out[i] = f16_bits_to_double(params + 2 * (d + i)) + f16_bits_to_double(params + 2 * i) * nib;
  }
  return out;
}

// fp8 K row by the format's definition: x = ref + e4m3, ref the block's f16 reference.
std::vector<double> decode_k8(const uint8_t* row, const uint8_t* refs, uint32_t d) {
  std::vector<double> out(d);
  for (uint32_t i = 0; i < d; ++i) {
    out[i] = static_cast<float>(f16_bits_to_double(refs + 2 * i)) + quant::fp8_to_f32(row[i]);
  }
  return out;
}

// One stored row decoded by the format's definition (kv_format.h), independently of kv_codec.
std::vector<double> decode_stored(const uint8_t* row, const uint8_t* scale, KvFormat f, uint32_t d) {
  std::vector<double> out(d);
  for (uint32_t i = 0; i < d; ++i) {
    switch (f) {
      case KvFormat::F32: {
        float v;
        std::memcpy(&v, row + 4 * i, 4);
        out[i] = v;
        break;
      }
      case KvFormat::F16: out[i] = f16_bits_to_double(row + 2 * i); break;
      case KvFormat::BF16: out[i] = bf16_bits_to_double(row + 2 * i); break;
      case KvFormat::Fp8E4M3: out[i] = quant::fp8_to_f32(row[i]); break;
      case KvFormat::Int8: out[i] = static_cast<int8_t>(row[i]) * f16_bits_to_double(scale); break;
      case KvFormat::Int4: {
        int nib = (row[i / 2] >> (4 * (i % 2))) & 0xF;
        REQUIRE(nib != 8);  // -8 is never written: the grid is -7..7
        out[i] = (nib >= 8 ? nib - 16 : nib) * f16_bits_to_double(scale);
        break;
      }
    }
  }
  return out;
}

// Largest error the format may add to element x of a row whose stored scale is s.
double element_error(KvFormat f, double x, double s) {
  switch (f) {
    case KvFormat::F32: return 0;
    case KvFormat::F16: return std::fabs(x) * 0x1p-11 + 0x1p-25;   // half a unit in the last place, subnormal step 2^-24
    case KvFormat::BF16: return std::fabs(x) * 0x1p-8 + 0x1p-134;
    case KvFormat::Fp8E4M3: return std::fabs(x) * 0x1p-4 + 0x1p-10;  // 3 mantissa bits; subnormal step 2^-9
    case KvFormat::Int8:
    case KvFormat::Int4: return s / 2 * (1 + 1e-6);  // rounding to the scale's grid
  }
  return 0;
}

// int4 K: each re-coding of a channel (its range grew) may add half the new step to an element's
// error, at most kTpb - 1 times, and f16 rounding of the params a little more.
double k4_error(double x, double step_max) { return (kTpb + 1) * step_max / 2 + std::fabs(x) * 0x1p-9; }

struct Seq {
  uint32_t prefill, total;
  std::vector<uint32_t> block_ids;  // into the arena, deliberately not in order
};

struct Case {
  uint32_t d;
  KvFormat f;
  kv::KvLayout layout;
  Offsets off;
  std::vector<uint8_t> arena;
  // Original K and V per sequence: [position][kv_heads * d], and each row's stored scale.
  std::vector<std::vector<std::vector<float>>> k, v;

  Case(uint32_t head_dim, KvFormat format, uint32_t blocks)
      : d(head_dim),
        f(format),
        layout(kv::make_layout({kTpb, kLayers, kKvHeads, head_dim, format, kv::default_scale_bytes(format)})),
        off(head_dim, format),
        arena(blocks * layout.block_bytes, kSentinel) {}
};

void check_case(uint32_t d, KvFormat f) {
  CAPTURE(d);
  CAPTURE(kv::format_name(f));
  // Two sequences: 9 + 1 tokens (3 blocks, the last holding 2) and 5 + 1 (2 blocks, 2 in the last).
  std::vector<Seq> seqs{{9, 10, {4, 0, 2}}, {5, 6, {1, 3}}};
  Case c(d, f, 5);
  REQUIRE(c.layout.row_bytes == c.off.row_bytes);
  REQUIRE(c.layout.region_bytes == c.off.region);

  std::mt19937 rng(1234 + d * 7 + static_cast<uint32_t>(f));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t kv_dim = size_t{kKvHeads} * d, q_dim = size_t{kHeads} * d;
  c.k.resize(seqs.size());
  c.v.resize(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (uint32_t p = 0; p < seqs[s].total; ++p) {
      std::vector<float> kr(kv_dim), vr(kv_dim);
      // Keys with a spread of magnitudes (some rows with one large outlier), values near 1.
      for (float& x : kr) x = normal(rng) * 1.5f;
      for (float& x : vr) x = normal(rng);
      if (p % 3 == 0) kr[p % kv_dim] = 6.0f;
      c.k[s].push_back(kr);
      c.v[s].push_back(vr);
    }
  }

  engine::ThreadPool pool(2);
  std::vector<std::vector<uint8_t*>> tables(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (uint32_t b : seqs[s].block_ids) tables[s].push_back(c.arena.data() + b * c.layout.block_bytes);
  }

  // Step 0 prefills both sequences; step 1 decodes one token of each.
  for (int step = 0; step < 2; ++step) {
    CAPTURE(step);
    std::vector<ops::PagedSequence> paged;
    std::vector<float> k, v, q;
    std::vector<std::pair<size_t, uint32_t>> row_of;  // (sequence, position) of each row
    for (size_t s = 0; s < seqs.size(); ++s) {
      ops::PagedSequence ps;
      ps.blocks = tables[s];
      ps.position = step == 0 ? 0 : seqs[s].prefill;
      ps.n_tokens = step == 0 ? seqs[s].prefill : seqs[s].total - seqs[s].prefill;
      ps.row = static_cast<uint32_t>(row_of.size());
      for (uint32_t t = 0; t < ps.n_tokens; ++t) {
        uint32_t p = ps.position + t;
        k.insert(k.end(), c.k[s][p].begin(), c.k[s][p].end());
        v.insert(v.end(), c.v[s][p].begin(), c.v[s][p].end());
        for (size_t i = 0; i < q_dim; ++i) q.push_back(normal(rng));
        row_of.push_back({s, p});
      }
      paged.push_back(ps);
    }
    ops::write_kv(c.layout, kLayer, paged, k.data(), v.data());
    std::vector<float> out(row_of.size() * q_dim, NAN);
    ops::attention(pool, c.layout, kLayer, kHeads, paged, q.data(), out.data());

    // The stored rows of everything written so far, decoded from the bytes; the scales checked.
    const uint32_t qmax = f == KvFormat::Int8 ? 127 : 7;
    uint32_t own_pos = 0;  // position of the row whose attention is being checked
    auto stored = [&](size_t s, uint32_t kv01, uint32_t p, uint32_t h, double* scale_out) {
      const uint8_t* block = tables[s][p / kTpb];
      const uint8_t* sc = block + c.off.scale(kLayer, kv01, h, p % kTpb);
      double scale = kv::default_scale_bytes(f) ? f16_bits_to_double(sc) : 0;
      if (f == KvFormat::Int4 && kv01 == 0) {
        // As the row's query saw it: its own block right after its own row (a prefill row), rebuilt
        // from the original rows; any other block as the slab holds it.
        const uint8_t* rows = block + c.off.row(kLayer, 0, h, 0);
        const uint8_t* params = block + c.off.k_step(kLayer, h, 0);
        std::vector<uint8_t> own;
        if (p / kTpb == own_pos / kTpb && step == 0) {
          own.assign(kTpb * d / 2 + 4 * d, 0);
          for (uint32_t t = p / kTpb * kTpb; t <= own_pos; ++t) {
            kv::append_k_int4(c.k[s][t].data() + h * d, d, t % kTpb, own.data(), own.data() + kTpb * d / 2);
          }
          rows = own.data();
          params = own.data() + kTpb * d / 2;
        }
        double step_max = 0;
        for (uint32_t i = 0; i < d; ++i) step_max = std::max(step_max, f16_bits_to_double(params + 2 * i));
        *scale_out = step_max;
        return decode_k4(rows, params, d, p % kTpb);
      }
      if (f == KvFormat::Fp8E4M3 && kv01 == 0) {
        // The references are the block's first row (slot 0) rounded to f16.
        const uint8_t* refs = block + c.off.k_step(kLayer, h, 0);
        const std::vector<float>& first = c.k[s][p / kTpb * kTpb];
        for (uint32_t i = 0; i < d; ++i) {
          REQUIRE(f16_bits_to_double(refs + 2 * i) == static_cast<double>(simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(first[h * d + i]))));
        }
        *scale_out = 0;
        return decode_k8(block + c.off.row(kLayer, 0, h, p % kTpb), refs, d);
      }
      if (kv::default_scale_bytes(f)) {
        const std::vector<float>& orig = (kv01 == 0 ? c.k : c.v)[s][p];
        double amax = 0;
        for (uint32_t i = 0; i < d; ++i) amax = std::max(amax, std::fabs(double(orig[h * d + i])));
        // scale = amax / qmax rounded to f16: relative 2^-11.
        REQUIRE(std::fabs(scale - amax / qmax) <= amax / qmax * 0x1p-11);
      }
      *scale_out = scale;
      return decode_stored(block + c.off.row(kLayer, kv01, h, p % kTpb), sc, f, d);
    };

    double worst_a = 0, worst_b = 0;
    for (size_t r = 0; r < row_of.size(); ++r) {
      auto [s, pos] = row_of[r];
      own_pos = pos;
      const uint32_t ctx = pos + 1;
      for (uint32_t h = 0; h < kHeads; ++h) {
        const uint32_t kvh = h / (kHeads / kKvHeads);
        const float* qh = q.data() + r * q_dim + h * d;
        const double inv_sqrt = 1.0 / std::sqrt(double(d));
        std::vector<double> sa(ctx), sb(ctx);  // scores over stored (a) and original (b) keys
        std::vector<std::vector<double>> va(ctx);
        double max_dot_abs = 0, delta = 0, vmax = 0, ev_max = 0;
        for (uint32_t p = 0; p < ctx; ++p) {
          double ks, vs;
          std::vector<double> kd = stored(s, 0, p, kvh, &ks);
          va[p] = stored(s, 1, p, kvh, &vs);
          double a = 0, b = 0, abs_dot = 0, err = 0;
          for (uint32_t i = 0; i < d; ++i) {
            double orig = c.k[s][p][kvh * d + i];
            a += qh[i] * kd[i];
            b += qh[i] * orig;
            abs_dot += std::fabs(qh[i] * kd[i]);
            double ek = f == KvFormat::Int4 ? k4_error(orig, ks) : element_error(f, orig, ks);
            if (f == KvFormat::Fp8E4M3) {  // K: E4M3 of the residual from the reference, plus the f32 add
              const double ref = f16_bits_to_double(tables[s][p / kTpb] + c.off.k_step(kLayer, kvh, i));
              ek = element_error(f, orig - ref, 0) + std::fabs(orig) * 0x1p-23;
            }
            err += std::fabs(qh[i]) * ek;
            double vo = c.v[s][p][kvh * d + i];
            vmax = std::max(vmax, std::fabs(vo));
            ev_max = std::max(ev_max, element_error(f, vo, vs));
          }
          sa[p] = a * inv_sqrt;
          sb[p] = b * inv_sqrt;
          max_dot_abs = std::max(max_dot_abs, abs_dot * inv_sqrt);
          delta = std::max(delta, err * inv_sqrt);
        }
        auto softmax = [](std::vector<double> x) {
          double mx = *std::max_element(x.begin(), x.end()), sum = 0;
          for (double& e : x) sum += (e = std::exp(e - mx));
          for (double& e : x) e /= sum;
          return x;
        };
        std::vector<double> wa = softmax(sa), wb = softmax(sb);
        // (a) f32 rounding only. Dot products of d terms are within d u sum|q k| (u = 2^-24,
        // Higham's gamma_d); a score error e changes each softmax weight by a factor within
        // e^(+-2e), so the output by at most (e^(2e) - 1) max|v|; the weighted sum of ctx rows of
        // d-length axpys adds ctx u max|v|. Doubled for slack.
        double vmax_stored = 0;
        for (const std::vector<double>& row : va) {
          for (double e : row) vmax_stored = std::max(vmax_stored, std::fabs(e));
        }
        const double u = 0x1p-24;
        const double score_err = (d + 4) * u * max_dot_abs;
        const double bound_a = 2 * ((std::exp(2 * score_err) - 1) + (ctx + 4) * u) * vmax_stored;
        // (b) a key error per element e_k moves each score by at most delta = sum |q_i| e_k / sqrt(d),
        // hence the weights by the factor e^(+-2 delta); a value error per element adds at most
        // its own size to a convex combination. Plus (a)'s rounding.
        const double bound_b = (std::exp(2 * delta) - 1) * vmax + ev_max + bound_a;
        for (uint32_t i = 0; i < d; ++i) {
          double ra = 0, rb = 0;
          for (uint32_t p = 0; p < ctx; ++p) {
            ra += wa[p] * va[p][i];
            rb += wb[p] * c.v[s][p][kvh * d + i];
          }
          double got = out[r * q_dim + h * d + i];
          REQUIRE(std::isfinite(got));
          CHECK(std::fabs(got - ra) <= bound_a);
          CHECK(std::fabs(got - rb) <= bound_b);
          worst_a = std::max(worst_a, std::fabs(got - ra) / bound_a);
          worst_b = std::max(worst_b, std::fabs(got - rb) / bound_b);
        }
      }
    }
    // For the format with no error at all the (b) reference is the (a) one; elsewhere the
    // quantization error must actually be visible against the original values.
    if (f != KvFormat::F32) CHECK(worst_b > 0);
  }

  // Every byte written lies in a row or scale of layer kLayer of a written position; the rest of
  // the arena (the other layer, slots past each sequence's end, padding) keeps its sentinel.
  std::vector<uint8_t> expected_written(c.arena.size(), 0);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (uint32_t p = 0; p < seqs[s].total; ++p) {
      uint64_t base = uint64_t{seqs[s].block_ids[p / kTpb]} * c.layout.block_bytes;
      for (uint32_t kv01 = 0; kv01 < 2; ++kv01) {
        for (uint32_t h = 0; h < kKvHeads; ++h) {
          uint64_t row = base + c.off.row(kLayer, kv01, h, p % kTpb);
          for (uint64_t b = 0; b < c.off.row_bytes; ++b) expected_written[row + b] = 1;
          if (c.off.params_bytes && kv01 == 0) {
            const uint64_t at = base + c.off.k_step(kLayer, h, 0);
            for (uint64_t b = 0; b < c.off.params_bytes; ++b) expected_written[at + b] = 1;
          } else if (kv::default_scale_bytes(f)) {
            uint64_t sc = base + c.off.scale(kLayer, kv01, h, p % kTpb);
            expected_written[sc] = expected_written[sc + 1] = 1;
          }
        }
      }
    }
  }
  size_t stray = 0;
  for (size_t i = 0; i < c.arena.size(); ++i) stray += !expected_written[i] && c.arena[i] != kSentinel;
  CHECK(stray == 0);
}

}  // namespace

TEST_CASE("paged attention in every KV format matches float64 attention over stored and original values") {
  for (uint32_t d : {8u, 64u, 128u}) {
    for (KvFormat f : kv::kAllKvFormats) check_case(d, f);
  }
}

TEST_CASE("KV rows: fp8 decodes every code as quant::fp8_to_f32, int4 packs as documented") {
  std::vector<uint8_t> codes(256);
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>(i);
  std::vector<float> got(256);
  kv::decode_row(codes.data(), nullptr, KvFormat::Fp8E4M3, 256, got.data());
  for (int i = 0; i < 256; ++i) {
    CAPTURE(i);
    float want = quant::fp8_to_f32(static_cast<uint8_t>(i));
    if (std::isnan(want)) {
      CHECK(std::isnan(got[i]));
    } else {
      CHECK(got[i] == want);
    }
  }

  // amax 7 -> scale exactly 1: element 2i in the low nibble, 2i + 1 in the high, two's complement.
  const float x[8] = {7, -7, 3, -1, 0.4f, -2.6f, 0, 5};
  uint8_t row[4], scale[2];
  kv::encode_row(x, KvFormat::Int4, 8, row, scale);
  CHECK(f16_bits_to_double(scale) == 1.0);
  CHECK(row[0] == 0x97);  // 7 | (-7 = 0x9) << 4
  CHECK(row[1] == 0xF3);  // 3 | (-1 = 0xF) << 4
  CHECK(row[2] == 0xD0);  // round(0.4) = 0 | (round(-2.6) = -3 = 0xD) << 4
  CHECK(row[3] == 0x50);

  // int8: amax 127 -> scale 1, q = round(x).
  std::vector<float> y(16);
  for (int i = 0; i < 16; ++i) y[i] = static_cast<float>(i * 8 - 64) + 0.3f;
  y[3] = -127;
  uint8_t q[16], s8[2];
  kv::encode_row(y.data(), KvFormat::Int8, 16, q, s8);
  CHECK(f16_bits_to_double(s8) == 1.0);
  for (int i = 0; i < 16; ++i) CHECK(static_cast<int8_t>(q[i]) == static_cast<int>(std::lround(y[i])));
}

TEST_CASE("write_kv refuses an int8/int4 geometry without room for the f16 scale") {
  for (KvFormat f : {KvFormat::Int8, KvFormat::Int4}) {
    kv::KvLayout layout = kv::make_layout({kTpb, 1, 1, 8, f, 0});
    std::vector<uint8_t> block(layout.block_bytes);
    ops::PagedSequence s;
    s.blocks = {block.data()};
    s.n_tokens = 1;
    std::vector<float> k(8, 1.0f), v(8, 1.0f);
    CHECK_THROWS_WITH_AS(ops::write_kv(layout, 0, {s}, k.data(), v.data()), doctest::Contains("scaleBytes = 0"),
                         std::invalid_argument);
  }
  CHECK(kv::default_scale_bytes(KvFormat::Int8) == 2);
  CHECK(kv::default_scale_bytes(KvFormat::Int4) == 2);
  for (KvFormat f : {KvFormat::F32, KvFormat::F16, KvFormat::BF16, KvFormat::Fp8E4M3}) {
    CHECK(kv::default_scale_bytes(f) == 0);
  }
}
