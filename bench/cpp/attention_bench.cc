// ops::attention (the blocked, flash-style kernels of ops/attention_kernels.h) against the row-wise
// attention it replaced, measured in the same run: one (token, KV head) at a time, every cached
// row decoded per token, one dot_f32 per row and query head, std::exp, one axpy per value row.
// Shapes: llama-100m (12 heads over 4 KV heads, head_dim 64) and a Llama-3-8B layer (32 over 8,
// head_dim 128); prefill of one prompt (256, 1024 tokens, one step) and decode (1 and 8 sequences
// at 1,024 cached tokens, one token each). One thread by default, timed by thread CPU time (a shared
// VM's other load barely moves it); --threads N runs the blocked path on N and times by wall clock
// (--wall does on one thread too).
// Median of the repetitions. The row-wise path reads f32/f16/bf16/int8 caches;
// int4 and fp8 (per-channel K) run the blocked path only. Both outputs are compared: the bench
// fails when they differ by more than float rounding.
// Build: the CMake target fineserve_attention_bench (built with the C++ tests; ctest runs it once).
// Run:   fineserve_attention_bench [--reps N] [--threads N] [--wall] [--formats f16,int8,...] [--smoke] [--out FILE.json]
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/thread_pool.h"
#include "kv/kv_codec.h"
#include "kv/kv_geometry.h"
#include "ops/attention.h"
#include "simd/dispatch.h"

using namespace fineserve;

namespace {

// One thread: its CPU time (a shared VM's other load barely moves it); several: wall time.
bool g_wall = false;
double thread_seconds() {
  timespec ts;
  clock_gettime(g_wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// The attention of before #20's blocked kernels, for formats whose K is per row.
void rowwise_attention(const kv::KvLayout& layout, uint32_t layer, uint32_t heads,
                       const std::vector<ops::PagedSequence>& seqs, const float* q, float* out) {
  const kv::KvGeometry& g = layout.geometry;
  const uint32_t d = g.head_dim, group = heads / g.num_kv_heads, tpb = g.tokens_per_block;
  const size_t q_stride = size_t{heads} * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const simd::Kernels& k = simd::active();
  std::vector<float> scores, row(d), acc;
  for (const ops::PagedSequence& s : seqs) {
    for (uint32_t t = 0; t < s.n_tokens; ++t) {
      for (uint32_t kvh = 0; kvh < g.num_kv_heads; ++kvh) {
        const uint32_t ctx = s.position + t + 1;
        const float* qt = q + (s.row + t) * q_stride;
        scores.resize(size_t{group} * ctx);
        for (uint32_t p = 0; p < ctx; ++p) {
          const uint8_t* b = s.blocks[p / tpb];
          const float* kr = kv::decode_row(b + layout.row_offset(layer, 0, kvh, p % tpb), b + layout.scale_at(layer, 0, kvh, p % tpb),
                                           g.format, d, row.data());
          for (uint32_t j = 0; j < group; ++j) scores[j * ctx + p] = k.dot_f32(qt + (kvh * group + j) * d, kr, d) * scale;
        }
        for (uint32_t j = 0; j < group; ++j) {
          float* sc = scores.data() + j * ctx;
          float mx = *std::max_element(sc, sc + ctx);
          double sum = 0;
          for (uint32_t p = 0; p < ctx; ++p) sum += (sc[p] = std::exp(sc[p] - mx));
          for (uint32_t p = 0; p < ctx; ++p) sc[p] = static_cast<float>(sc[p] / sum);
        }
        acc.assign(size_t{group} * d, 0.0f);
        for (uint32_t p = 0; p < ctx; ++p) {
          const uint8_t* b = s.blocks[p / tpb];
          const float* vr = kv::decode_row(b + layout.row_offset(layer, 1, kvh, p % tpb), b + layout.scale_at(layer, 1, kvh, p % tpb),
                                           g.format, d, row.data());
          for (uint32_t j = 0; j < group; ++j) k.axpy_f32(scores[j * ctx + p], vr, acc.data() + j * d, d);
        }
        for (uint32_t j = 0; j < group; ++j) {
          std::memcpy(out + (s.row + t) * q_stride + (kvh * group + j) * d, acc.data() + j * d, d * sizeof(float));
        }
      }
    }
  }
}

struct Shape {
  const char* name;
  uint32_t heads, kv_heads, d;
};

struct Case {
  const char* kind;  // prefill | decode
  uint32_t tokens;   // prefill: prompt tokens; decode: cached tokens before the step
  uint32_t seqs;
};

struct Result {
  double blocked_s, rowwise_s, flops, max_diff;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One case: the cache filled (write_kv of every earlier position in one step, untimed), then the
// timed step's attention, each path `reps` times.
Result run_case(const Shape& sh, kv::KvFormat f, const Case& c, int reps, engine::ThreadPool& pool) {
  const uint32_t tpb = 16, total = c.kind[0] == 'p' ? c.tokens : c.tokens + 1;
  const kv::KvLayout layout = kv::make_layout({tpb, 1, sh.kv_heads, sh.d, f, kv::default_scale_bytes(f)});
  const uint32_t blocks_per_seq = (total + tpb - 1) / tpb;
  std::vector<uint8_t> arena(size_t{c.seqs} * blocks_per_seq * layout.block_bytes);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t kv_dim = size_t{sh.kv_heads} * sh.d, q_dim = size_t{sh.heads} * sh.d;
  std::vector<ops::PagedSequence> fill, step;
  for (uint32_t s = 0; s < c.seqs; ++s) {
    ops::PagedSequence ps;
    for (uint32_t b = 0; b < blocks_per_seq; ++b) ps.blocks.push_back(arena.data() + (size_t{s} * blocks_per_seq + b) * layout.block_bytes);
    const uint32_t before = total - (c.kind[0] == 'p' ? c.tokens : 1);
    ps.position = 0;
    ps.n_tokens = before;
    ps.row = s * before;
    if (before > 0) fill.push_back(ps);
    ps.position = before;
    ps.n_tokens = total - before;
    ps.row = s * ps.n_tokens;
    step.push_back(ps);
  }
  auto random_rows = [&](size_t n) {
    std::vector<float> x(n);
    for (float& e : x) e = normal(rng);
    return x;
  };
  if (!fill.empty()) {
    const size_t rows = size_t{c.seqs} * fill[0].n_tokens;
    std::vector<float> k = random_rows(rows * kv_dim), v = random_rows(rows * kv_dim);
    ops::write_kv(layout, 0, fill, k.data(), v.data());
  }
  const size_t rows = size_t{c.seqs} * step[0].n_tokens;
  std::vector<float> k = random_rows(rows * kv_dim), v = random_rows(rows * kv_dim), q = random_rows(rows * q_dim);
  ops::write_kv(layout, 0, step, k.data(), v.data());
  std::vector<float> out(rows * q_dim), ref(rows * q_dim);
  const bool rowwise = !kv::k_per_channel(f);
  std::vector<double> tb, tr;
  for (int r = 0; r < reps; ++r) {
    double t0 = thread_seconds();
    ops::attention(pool, layout, 0, sh.heads, step, q.data(), out.data());
    tb.push_back(thread_seconds() - t0);
    if (rowwise) {
      t0 = thread_seconds();
      rowwise_attention(layout, 0, sh.heads, step, q.data(), ref.data());
      tr.push_back(thread_seconds() - t0);
    }
  }
  double flops = 0;  // 2 d per score and 2 d per value row, per query head and visible key
  for (const ops::PagedSequence& s : step) {
    for (uint32_t t = 0; t < s.n_tokens; ++t) flops += 4.0 * sh.d * sh.heads * (s.position + t + 1);
  }
  double max_diff = 0;
  if (rowwise) {
    for (size_t i = 0; i < out.size(); ++i) max_diff = std::max(max_diff, double(std::fabs(out[i] - ref[i])));
  }
  return {median(tb), rowwise ? median(tr) : NAN, flops, max_diff};
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  unsigned threads = 1;
  bool smoke = false;
  std::string formats = "f16,f32,bf16,int8,int4,fp8", out_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--formats" && i + 1 < argc) formats = argv[++i];
    else if (a == "--threads" && i + 1 < argc) threads = static_cast<unsigned>(std::max(1, std::atoi(argv[++i])));
    else if (a == "--out" && i + 1 < argc) out_path = argv[++i];
    else if (a == "--smoke") smoke = true;
    else if (a == "--wall") g_wall = true;
    else {
      std::fprintf(stderr, "usage: fineserve_attention_bench [--reps N] [--threads N] [--wall] [--formats f16,int8,...] [--smoke] [--out FILE.json]\n");
      return 2;
    }
  }
  engine::ThreadPool pool(threads);
  threads = pool.size();  // clamped to the usable cores
  g_wall = g_wall || threads > 1;
  const std::vector<Shape> shapes = smoke ? std::vector<Shape>{{"tiny", 4, 2, 16}}
                                          : std::vector<Shape>{{"llama-100m", 12, 4, 64}, {"llama-3-8b", 32, 8, 128}};
  const std::vector<Case> cases = smoke ? std::vector<Case>{{"prefill", 40, 1}, {"decode", 40, 2}}
                                        : std::vector<Case>{{"prefill", 256, 1}, {"prefill", 1024, 1}, {"decode", 1024, 1}, {"decode", 1024, 8}};
  if (smoke) reps = 1;
  const char* timing = g_wall ? "wall time (the row-wise path on one thread)" : "thread CPU time";
  std::printf("SIMD level %s, %u thread(s), %s, median of %d\n", simd::level_name(simd::active().level), threads, timing, reps);
  std::printf("%-11s %-5s %-8s %6s %5s %11s %9s %11s %9s %7s\n", "shape", "kv", "case", "tokens", "seqs", "blocked ms", "GFLOP/s",
              "rowwise ms", "GFLOP/s", "speedup");
  std::string json = "{\n  \"simd\": \"" + std::string(simd::level_name(simd::active().level)) + "\",\n  \"threads\": " +
                     std::to_string(threads) + ",\n  \"reps\": " + std::to_string(reps) + ",\n  \"timing\": \"" + timing +
                     ", median\",\n  \"results\": [";
  bool ok = true, first = true;
  for (const Shape& sh : shapes) {
    for (kv::KvFormat f : kv::kAllKvFormats) {
      const std::string fname = kv::format_name(f);
      if (("," + formats + ",").find("," + fname + ",") == std::string::npos) continue;
      for (const Case& c : cases) {
        const Result r = run_case(sh, f, c, reps, pool);
        const double speedup = r.rowwise_s / r.blocked_s;
        std::printf("%-11s %-5s %-8s %6u %5u %11.3f %9.1f", sh.name, fname.c_str(), c.kind, c.tokens, c.seqs, r.blocked_s * 1e3,
                    r.flops / r.blocked_s * 1e-9);
        if (std::isnan(speedup)) {
          std::printf(" %11s %9s %7s\n", "-", "-", "-");
        } else {
          std::printf(" %11.3f %9.1f %6.2fx\n", r.rowwise_s * 1e3, r.flops / r.rowwise_s * 1e-9, speedup);
        }
        // Both are softmax-weighted means of values of size ~1: they agree to float rounding.
        if (!(r.max_diff < 1e-4)) {
          std::fprintf(stderr, "%s %s %s %u: blocked and row-wise outputs differ by %g\n", sh.name, fname.c_str(), c.kind, c.tokens, r.max_diff);
          ok = false;
        }
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "%s\n    {\"shape\": \"%s\", \"heads\": %u, \"kvHeads\": %u, \"headDim\": %u, \"kv\": \"%s\", \"case\": \"%s\", "
                      "\"tokens\": %u, \"seqs\": %u, \"blockedMs\": %.4f, \"blockedGflops\": %.2f, \"rowwiseMs\": %s, \"speedup\": %s}",
                      first ? "" : ",", sh.name, sh.heads, sh.kv_heads, sh.d, fname.c_str(), c.kind, c.tokens, c.seqs, r.blocked_s * 1e3,
                      r.flops / r.blocked_s * 1e-9, std::isnan(r.rowwise_s) ? "null" : std::to_string(r.rowwise_s * 1e3).c_str(),
                      std::isnan(speedup) ? "null" : std::to_string(speedup).c_str());
        json += buf;
        first = false;
      }
    }
  }
  json += "\n  ]\n}\n";
  if (!out_path.empty()) {
    FILE* fp = std::fopen(out_path.c_str(), "w");
    if (fp == nullptr || std::fputs(json.c_str(), fp) < 0 || std::fclose(fp) != 0) {
      std::fprintf(stderr, "cannot write %s\n", out_path.c_str());
      return 1;
    }
    std::printf("wrote %s\n", out_path.c_str());
  }
  return ok ? 0 : 1;
}
