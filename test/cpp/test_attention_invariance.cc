// The blocked attention (ops/attention.cc) at every SIMD level this host runs, every KV format:
// (a) a token's output is bit-identical whether its prompt is prefilled whole or in chunks of
// 1, 5, 16 or 17 tokens, alone or batched with other sequences (at other rows of the step), on 1
// or 2 threads; (b) it matches a float64 attention over the values the cache stores, across many
// blocks (the online softmax rescales many times); (c) the fp8 and int4 row kernels decode as
// kv_codec does.
// Unwritten cache bytes are 0xFF (NaN in every float format), so a masked key that leaked into a
// sum would show.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/thread_pool.h"
#include "kv/kv_codec.h"
#include "kv/kv_geometry.h"
#include "ops/attention.h"
#include "ops/attention_kernels.h"
#include "simd/dispatch.h"
#include "simd/half.h"

using namespace fineserve;
using kv::KvFormat;

namespace {

struct Shape {
  uint32_t tpb, heads, kv_heads, d;
};

// Original rows of one sequence: [position][kv_heads * d] for K and V, [position][heads * d] for Q.
struct SeqData {
  std::vector<std::vector<float>> k, v, q;
};

SeqData make_seq(const Shape& sh, uint32_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  SeqData s;
  for (uint32_t p = 0; p < n; ++p) {
    std::vector<float> k(size_t{sh.kv_heads} * sh.d), v(k.size()), q(size_t{sh.heads} * sh.d);
    for (float& x : k) x = normal(rng) * 1.5f;
    for (float& x : v) x = normal(rng);
    for (float& x : q) x = normal(rng) * 1.5f;
    if (p % 7 == 3) k[p % k.size()] = 6.0f;  // an outlier now and then: int4 K re-codes its channel
    s.k.push_back(k);
    s.v.push_back(v);
    s.q.push_back(q);
  }
  return s;
}

// Runs sequences through write_kv + attention in steps. plan[step] lists (sequence, tokens) in row
// order; returns each sequence's outputs [position][heads * d]. Blocks are handed out interleaved.
struct Runner {
  Shape sh;
  kv::KvLayout layout;
  std::vector<uint8_t> arena;
  std::vector<std::vector<uint8_t*>> tables;

  Runner(const Shape& s, KvFormat f, const std::vector<uint32_t>& lengths)
      : sh(s), layout(kv::make_layout({s.tpb, 2, s.kv_heads, s.d, f, kv::default_scale_bytes(f)})) {
    uint32_t blocks = 0;
    for (uint32_t n : lengths) blocks += (n + s.tpb - 1) / s.tpb;
    arena.assign(size_t{blocks} * layout.block_bytes, 0xFF);
    tables.resize(lengths.size());
    uint32_t next = blocks;
    for (uint32_t b = 0; next > 0; ++b) {
      for (size_t i = 0; i < lengths.size(); ++i) {
        if (b * s.tpb < lengths[i]) tables[i].push_back(arena.data() + size_t{--next} * layout.block_bytes);
      }
    }
  }

  std::vector<std::vector<float>> run(const std::vector<const SeqData*>& data,
                                      const std::vector<std::vector<std::pair<size_t, uint32_t>>>& plan,
                                      unsigned threads, simd::Level level) {
    engine::ThreadPool pool(threads);
    const size_t q_dim = size_t{sh.heads} * sh.d;
    std::vector<uint32_t> pos(data.size(), 0);
    std::vector<std::vector<float>> out(data.size());
    for (size_t i = 0; i < data.size(); ++i) out[i].assign(data[i]->q.size() * q_dim, NAN);
    for (const auto& step : plan) {
      std::vector<ops::PagedSequence> seqs;
      std::vector<float> k, v, q;
      for (auto [i, n] : step) {
        seqs.push_back({tables[i], pos[i], n, static_cast<uint32_t>(q.size() / q_dim)});
        for (uint32_t t = 0; t < n; ++t) {
          const uint32_t p = pos[i] + t;
          k.insert(k.end(), data[i]->k[p].begin(), data[i]->k[p].end());
          v.insert(v.end(), data[i]->v[p].begin(), data[i]->v[p].end());
          q.insert(q.end(), data[i]->q[p].begin(), data[i]->q[p].end());
        }
      }
      const uint32_t layer = 1;
      ops::write_kv(layout, layer, seqs, k.data(), v.data());
      std::vector<float> o(q.size(), NAN);
      ops::attention(pool, layout, layer, sh.heads, seqs, q.data(), o.data(), level);
      for (size_t j = 0; j < step.size(); ++j) {
        auto [i, n] = step[j];
        std::memcpy(out[i].data() + size_t{pos[i]} * q_dim, o.data() + size_t{seqs[j].row} * q_dim, n * q_dim * sizeof(float));
        pos[i] += n;
      }
    }
    return out;
  }
};

// One sequence's steps: its prompt in chunks of `chunk` tokens.
std::vector<uint32_t> chunks(uint32_t n, uint32_t chunk) {
  std::vector<uint32_t> c;
  for (uint32_t p = 0; p < n; p += chunk) c.push_back(std::min(chunk, n - p));
  return c;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const Shape kShapes[] = {
    {16, 8, 2, 64},  // the default block, GQA 4
    {5, 3, 3, 12},   // MHA, a block not a multiple of the key lanes, head_dim not a multiple of 8
    {48, 4, 1, 32},  // a block in two chunks (32 + 16 keys), GQA 4 over one KV head
};

}  // namespace

TEST_CASE("attention: bit-identical whole, chunked, batched and threaded, every KV format and SIMD level") {
  for (simd::Level level : simd::supported_levels()) {
    const std::string level_name = simd::level_name(level);
    CAPTURE(level_name);
    for (const Shape& sh : kShapes) {
      CAPTURE(sh.tpb);
      CAPTURE(sh.d);
      const uint32_t na = 70, nb = 23, nc = 41;
      const SeqData a = make_seq(sh, na, 1), b = make_seq(sh, nb, 2), c = make_seq(sh, nc, 3);
      for (KvFormat f : kv::kAllKvFormats) {
        const std::string format = kv::format_name(f);
        CAPTURE(format);
        // A alone, its prompt in one step on one thread: the reference.
        Runner alone(sh, f, {na});
        const std::vector<float> ref = alone.run({&a}, {{{0, na}}}, 1, level)[0];
        for (float x : ref) REQUIRE(std::isfinite(x));
        for (uint32_t chunk : {1u, 5u, 16u, 17u}) {
          CAPTURE(chunk);
          for (unsigned threads : {1u, 2u}) {
            CAPTURE(threads);
            std::vector<std::vector<std::pair<size_t, uint32_t>>> plan;
            for (uint32_t n : chunks(na, chunk)) plan.push_back({{0, n}});
            Runner r(sh, f, {na});
            CHECK(same_bits(r.run({&a}, plan, threads, level)[0], ref));
          }
        }
        // Batched: B whole then decoding, C in chunks of 5, A in chunks of 17 at a non-zero row;
        // each sequence against itself alone and whole.
        std::vector<std::vector<std::pair<size_t, uint32_t>>> plan;
        std::vector<uint32_t> ca = chunks(na, 17), cb = {20, 1, 1, 1}, cc = chunks(nc, 5);
        for (size_t s = 0; s < std::max({ca.size(), cb.size(), cc.size()}); ++s) {
          std::vector<std::pair<size_t, uint32_t>> step;
          if (s < cb.size()) step.push_back({1, cb[s]});
          if (s < ca.size()) step.push_back({0, ca[s]});
          if (s < cc.size()) step.push_back({2, cc[s]});
          plan.push_back(step);
        }
        Runner batch(sh, f, {na, nb, nc});
        const auto got = batch.run({&a, &b, &c}, plan, 2, level);
        CHECK(same_bits(got[0], ref));
        Runner alone_b(sh, f, {nb}), alone_c(sh, f, {nc});
        CHECK(same_bits(got[1], alone_b.run({&b}, {{{0, nb}}}, 1, level)[0]));
        CHECK(same_bits(got[2], alone_c.run({&c}, {{{0, nc}}}, 1, level)[0]));
      }
    }
  }
}

namespace {

// K row at `pos` as the query at `own` saw it, in float64: int4's own block rebuilt from the
// original rows up to `own` (the snapshot rule of ops/attention.cc), every other block as the slab
// holds it; V rows from the slab. Decoded with kv_codec (test_attention_formats checks kv_codec
// against the formats' definitions).
std::vector<double> stored_row(const Runner& r, const SeqData& s, KvFormat f, uint32_t kv01, uint32_t h, uint32_t pos,
                               uint32_t own) {
  const uint32_t d = r.sh.d, tpb = r.sh.tpb, layer = 1;
  const uint8_t* block = r.tables[0][pos / tpb];
  std::vector<float> row(d);
  if (kv01 == 0 && f == KvFormat::Int4) {
    std::vector<uint8_t> copy(size_t{tpb} * d / 2 + 4 * size_t{d});
    std::vector<float> step(d), minimum(d);
    const uint8_t* rows = block + r.layout.row_offset(layer, 0, h, 0);
    const uint8_t* params = block + r.layout.k_params_at(layer, h);
    if (pos / tpb == own / tpb) {
      for (uint32_t t = pos / tpb * tpb; t <= own; ++t) {
        kv::append_k_int4(s.k[t].data() + h * d, d, t % tpb, copy.data(), copy.data() + size_t{tpb} * d / 2);
      }
      rows = copy.data();
      params = copy.data() + size_t{tpb} * d / 2;
    }
    kv::load_k_params(params, d, step.data(), minimum.data());
    kv::decode_k_int4(rows + size_t{pos % tpb} * d / 2, step.data(), minimum.data(), d, row.data());
  } else if (kv01 == 0 && f == KvFormat::Fp8E4M3) {
    std::vector<float> refs(d);
    kv::load_k_refs(block + r.layout.k_params_at(layer, h), d, refs.data());
    kv::decode_k_fp8(block + r.layout.row_offset(layer, 0, h, pos % tpb), refs.data(), d, row.data());
  } else {
    const float* got = kv::decode_row(block + r.layout.row_offset(layer, kv01, h, pos % tpb),
                                      block + r.layout.scale_at(layer, kv01, h, pos % tpb), f, d, row.data());
    std::copy(got, got + d, row.begin());
  }
  return std::vector<double>(row.begin(), row.end());
}

}  // namespace

TEST_CASE("attention: long contexts match float64 attention over the stored values, every KV format and SIMD level") {
  const Shape sh{16, 8, 2, 64};
  const uint32_t n = 300;  // 19 blocks: 19 online-softmax steps for the last token
  const SeqData a = make_seq(sh, n, 7);
  for (simd::Level level : simd::supported_levels()) {
    const std::string level_name = simd::level_name(level);
    CAPTURE(level_name);
    for (KvFormat f : kv::kAllKvFormats) {
      const std::string format = kv::format_name(f);
      CAPTURE(format);
      Runner r(sh, f, {n});
      const std::vector<float> out = r.run({&a}, {{{0, 200}}, {{0, 100}}}, 2, level)[0];
      const uint32_t d = sh.d, group = sh.heads / sh.kv_heads;
      double worst = 0;
      for (uint32_t pos = 0; pos < n; pos += (pos < 40 ? 1 : 13)) {
        for (uint32_t kvh = 0; kvh < sh.kv_heads; ++kvh) {
          std::vector<std::vector<double>> ks(pos + 1), vs(pos + 1);
          double vmax = 0;
          for (uint32_t p = 0; p <= pos; ++p) {
            ks[p] = stored_row(r, a, f, 0, kvh, p, pos);
            vs[p] = stored_row(r, a, f, 1, kvh, p, pos);
            for (double x : vs[p]) vmax = std::max(vmax, std::fabs(x));
          }
          for (uint32_t j = 0; j < group; ++j) {
            const uint32_t h = kvh * group + j;
            const float* q = a.q[pos].data() + size_t{h} * d;
            std::vector<double> w(pos + 1);
            double mx = -INFINITY, max_dot_abs = 0, sum = 0;
            for (uint32_t p = 0; p <= pos; ++p) {
              double dot = 0, abs_dot = 0;
              for (uint32_t c = 0; c < d; ++c) {
                dot += q[c] * ks[p][c];
                abs_dot += std::fabs(q[c] * ks[p][c]);
              }
              w[p] = dot / std::sqrt(double(d));
              mx = std::max(mx, w[p]);
              max_dot_abs = std::max(max_dot_abs, abs_dot / std::sqrt(double(d)));
            }
            for (double& e : w) sum += (e = std::exp(e - mx));
            // f32 rounding: the query's scaling and the d-term dot (d + 2 units of max|q k|), the
            // 2^x polynomial and the running maximum's rescaling (a few units per weight and per
            // block), the ctx-term value sum: as in test_attention_formats (a), doubled for slack.
            const double u = 0x1p-24, blocks = pos / sh.tpb + 1;
            const double score_err = (d + 4) * u * max_dot_abs * 1.4426950408889634 + 4 * u;
            const double bound = 2 * ((std::exp(2 * score_err) - 1) + (pos + 4 * blocks + 8) * u) * vmax;
            for (uint32_t c = 0; c < d; ++c) {
              double want = 0;
              for (uint32_t p = 0; p <= pos; ++p) want += w[p] / sum * vs[p][c];
              const double got = out[size_t{pos} * sh.heads * d + size_t{h} * d + c];
              REQUIRE(std::isfinite(got));
              CHECK(std::fabs(got - want) <= bound);
              worst = std::max(worst, std::fabs(got - want) / bound);
            }
          }
        }
      }
      MESSAGE("worst error / bound: " << worst);
      CHECK(worst > 0);  // the bound is not vacuous: some rounding is seen
    }
  }
}

TEST_CASE("attention kernels: fp8 rows decode as kv_codec does, every code, with and without references") {
  std::vector<uint8_t> codes(256 + 13);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 37 + 11);
  for (size_t i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>(i);
  std::vector<float> ref(codes.size());
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (float& r : ref) r = normal(rng);
  for (simd::Level level : simd::supported_levels()) {
    const std::string level_name = simd::level_name(level);
    CAPTURE(level_name);
    for (uint32_t n : {256u + 13u, 8u, 13u, 3u}) {
      CAPTURE(n);
      std::vector<float> want(n), got(n, -1.0f);
      kv::decode_row(codes.data(), nullptr, KvFormat::Fp8E4M3, n, want.data());
      ops::attn_kernels(level).fp8_row(codes.data(), n, nullptr, got.data());
      CHECK(std::memcmp(want.data(), got.data(), n * sizeof(float)) == 0);
      kv::decode_k_fp8(codes.data(), ref.data(), n, want.data());
      ops::attn_kernels(level).fp8_row(codes.data(), n, ref.data(), got.data());
      CHECK(std::memcmp(want.data(), got.data(), n * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("attention kernels: int4 K and V rows decode as kv_codec does") {
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const uint32_t n_max = 72;
  std::vector<uint8_t> codes(n_max / 2), scale_bits(2);
  for (uint8_t& c : codes) c = static_cast<uint8_t>(byte(rng));
  // Params as the cache holds them: f16 values (a step, a minimum per channel; a V scale per row).
  std::vector<float> step(n_max), minimum(n_max);
  for (uint32_t c = 0; c < n_max; ++c) {
    step[c] = simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(std::fabs(normal(rng)) / 15));
    minimum[c] = simd::f16_to_f32_scalar(simd::f32_to_f16_scalar(normal(rng)));
  }
  const uint16_t sh = simd::f32_to_f16_scalar(0.37f);
  std::memcpy(scale_bits.data(), &sh, 2);
  for (simd::Level level : simd::supported_levels()) {
    const std::string level_name = simd::level_name(level);
    CAPTURE(level_name);
    for (uint32_t n : {n_max, 64u, 24u, 6u}) {
      CAPTURE(n);
      std::vector<float> want(n), got(n, -1.0f);
      kv::decode_k_int4(codes.data(), step.data(), minimum.data(), n, want.data());
      ops::attn_kernels(level).int4_k_row(codes.data(), step.data(), minimum.data(), n, got.data());
      CHECK(std::memcmp(want.data(), got.data(), n * sizeof(float)) == 0);
      kv::decode_row(codes.data(), scale_bits.data(), KvFormat::Int4, n, want.data());
      ops::attn_kernels(level).int4_v_row(codes.data(), simd::f16_to_f32_scalar(sh), n, got.data());
      CHECK(std::memcmp(want.data(), got.data(), n * sizeof(float)) == 0);
    }
  }
}
