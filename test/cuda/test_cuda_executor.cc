// The CUDA executor against the CPU executor and the stories260K golden file. Under the SIMT
// emulator (ctest) the kernels run on the CPU; the same binary built with nvcc
// (fineserve_gpu_tests) runs these on a GPU. Sequences are teacher-forced (both executors are fed
// the same tokens), so a near-tie that rounds differently cannot make the two runs diverge, and
// every position's logits are compared.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common/device.h"
#include "engine/cpu_executor.h"
#include "engine/cuda_executor.h"
#include "golden_cases.h"
#include "greedy_batch.h"
#include "kv/kv_slab.h"
#include "model/generate.h"
#include "model/gguf_quantize.h"
#include "model/loader.h"
#include "model_test_files.h"

using namespace fineserve;
using model::DType;
using kv::KvFormat;

namespace {

const char* device_memory() { return gpu::simulated() ? "host" : "cuda:0"; }

struct Slab {
  kv::KvSlab pool;
  explicit Slab(const char* memory) : pool(kv::KvSlabOptions{8ull << 20, 1ull << 20, 0.125, memory}) {}
};

// One model registered with a slab, with its executor.
struct Served {
  kv::ModelId id;
  std::unique_ptr<engine::Executor> exec;
};

Served serve(const model::LoadedModel& m, kv::KvSlab& pool, KvFormat format, bool cuda, uint32_t tpb = 16) {
  static int next = 0;
  Served s;
  s.id = pool.add_model({"m" + std::to_string(next++), engine::kv_geometry_for(m.config, format, tpb), 0, 0});
  if (cuda) {
    s.exec = gpu::make_cuda_executor(m, pool, s.id, {format});
  } else {
    s.exec = engine::make_cpu_executor(m, pool, s.id, {format, 1, nullptr});
  }
  return s;
}

// Blocks for every sequence, in a logical order unlike their physical order. Allocated before
// any step runs: the slab's bookkeeping is single-threaded (the engine's scheduler owns it), and
// the co-location test steps two executors from two threads at once.
std::vector<std::vector<kv::BlockId>> blocks_for(const Served& s, kv::KvSlab& pool,
                                                 const std::vector<std::vector<int32_t>>& seqs) {
  const uint32_t tpb = pool.layout(s.id).geometry.tokens_per_block;
  std::vector<std::vector<kv::BlockId>> blocks(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    REQUIRE(pool.alloc(s.id, static_cast<uint32_t>((seqs[i].size() + tpb - 1) / tpb), &blocks[i]).ok);
    std::reverse(blocks[i].begin(), blocks[i].end());
  }
  return blocks;
}

// Teacher-forced sequences in shared steps: each step takes up to `chunk` prompt tokens of every
// sequence still prefilling and one token of every decoding one; the logits after every position
// from the last prompt token on are kept, per sequence. No doctest assertions: it runs on threads.
std::vector<std::vector<std::vector<float>>> forced_logits(const Served& s, std::vector<std::vector<kv::BlockId>>& blocks,
                                                           const std::vector<std::vector<int32_t>>& seqs,
                                                           const std::vector<size_t>& prompt_lens, uint32_t chunk) {
  const size_t n = seqs.size();
  std::vector<engine::SamplingParams> params(n);
  std::vector<engine::SamplerState> states(n);
  for (size_t i = 0; i < n; ++i) states[i].reset(s.exec->vocab_size(), seqs[i].data(), static_cast<uint32_t>(prompt_lens[i]));
  std::vector<size_t> done(n, 0);
  std::vector<std::vector<std::vector<float>>> out(n);
  const uint32_t vocab = s.exec->vocab_size();
  for (;;) {
    std::vector<engine::SequenceChunk> batch;
    std::vector<size_t> which;
    for (size_t i = 0; i < n; ++i) {
      if (done[i] >= seqs[i].size()) continue;
      const size_t take = done[i] < prompt_lens[i] ? std::min<size_t>(chunk, prompt_lens[i] - done[i]) : 1;
      engine::SequenceChunk c;
      c.tokens = seqs[i].data() + done[i];
      c.n_tokens = static_cast<uint32_t>(take);
      c.position = static_cast<uint32_t>(done[i]);
      c.block_table = blocks[i].data();
      c.n_blocks = static_cast<uint32_t>(blocks[i].size());
      c.sample = done[i] + take >= prompt_lens[i];
      c.sampling = &params[i];
      c.sampler_state = &states[i];
      batch.push_back(c);
      which.push_back(i);
      done[i] += take;
    }
    if (batch.empty()) break;
    engine::StepOutput step = s.exec->step(batch, true);
    size_t row = 0;
    for (size_t b = 0; b < batch.size(); ++b) {
      if (!batch[b].sample) continue;
      out[which[b]].emplace_back(step.logits.begin() + row * vocab, step.logits.begin() + (row + 1) * vocab);
      ++row;
    }
  }
  return out;
}

std::vector<std::vector<std::vector<float>>> forced_logits(const Served& s, kv::KvSlab& pool,
                                                           const std::vector<std::vector<int32_t>>& seqs,
                                                           const std::vector<size_t>& prompt_lens, uint32_t chunk) {
  auto blocks = blocks_for(s, pool, seqs);
  auto out = forced_logits(s, blocks, seqs, prompt_lens, chunk);
  for (auto& b : blocks) pool.free(s.id, b.data(), b.size());
  return out;
}

double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// A random-weight "tiny" model (GQA, head_dim 16; "tiny-qwen2" adds q/k/v biases and tied
// embeddings) in `dtype`. `quant` is a PTQ format to quantize to at load, or a GGUF block type
// (Q8_0, Q4_0) to re-encode the file in, which the GPU widens to F16 at upload.
std::unique_ptr<model::LoadedModel> tiny_model(const model::testing::TempDir& dir, DType file_dtype, DType quant,
                                               KvFormat kv, const std::string& shape = "tiny") {
  model::GenerateOptions g;
  g.shape = shape;
  g.dtype = file_dtype;
  g.seed = 7;
  g.out = (dir / (shape + "-" + model::dtype_name(file_dtype) + ".gguf")).string();
  model::generate_model(g);
  model::LoadOptions o;
  if (quant == DType::Q8_0 || quant == DType::Q4_0) {
    const std::string dst = (dir / (shape + "-" + model::dtype_name(quant) + ".gguf")).string();
    model::write_quantized_gguf(g.out, dst, quant);
    return model::load_model(dst, o);
  }
  if (quant != file_dtype) {
    model::QuantizeSpec q;
    q.weights = quant;
    q.group = 32;  // several groups per row of the tiny model's 64 and 192 columns
    q.kv = kv;
    o.quantize = q;
  }
  return model::load_model(g.out, o);
}

// Prompts of several lengths (one spans blocks) with a continuation to force.
std::vector<std::vector<int32_t>> prompts(uint32_t vocab) {
  std::vector<std::vector<int32_t>> seqs;
  const size_t lens[] = {1, 7, 21};
  for (size_t i = 0; i < 3; ++i) {
    std::vector<int32_t> s;
    for (size_t t = 0; t < lens[i] + 6; ++t) s.push_back(static_cast<int32_t>((t * 37 + i * 101 + 5) % vocab));
    seqs.push_back(std::move(s));
  }
  return seqs;
}

}  // namespace

TEST_CASE("cuda executor: stories260K greedy ids and top-5 logits equal the golden file") {
  std::vector<model::testing::GoldenCase> cases = model::testing::golden_cases();
  auto m = model::load_model(model::testing::require_fixture("stories260K.gguf").string());
  Slab slab(device_memory());
  Served s = serve(*m, slab.pool, KvFormat::F32, true);
  // All four prompts in the same steps, the longest continuation the emulator runs quickly.
  const size_t max_new = gpu::simulated() ? 12 : 64;
  std::vector<test::Seq> seqs;
  for (const auto& c : cases) seqs.emplace_back(c.prompt);
  for (test::Seq& q : seqs) {
    REQUIRE(slab.pool.alloc(s.id, static_cast<uint32_t>((q.prompt_len + max_new + 15) / 16), &q.blocks).ok);
  }
  std::vector<float> first;
  test::run_greedy(*s.exec, seqs, max_new, 1024, &first);
  const uint32_t vocab = s.exec->vocab_size();
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    CAPTURE(ci);
    std::vector<int32_t> want(cases[ci].greedy.begin(),
                              cases[ci].greedy.begin() + static_cast<long>(std::min(max_new, cases[ci].greedy.size())));
    CHECK(seqs[ci].generated() == want);
    for (auto [id, logit] : cases[ci].top5) {
      CHECK(std::fabs(first[ci * vocab + id] - logit) <= 1e-4 * std::fabs(logit) + 1e-5);
    }
  }
}

TEST_CASE("cuda executor: the same logits as the CPU executor in every precision, prefill and decode") {
  struct Case {
    DType file, weights;
    KvFormat kv;
    double tol;  // relative error of each position's logits against the CPU's
    const char* shape = "tiny";
  };
  // The CPU and GPU decode the same stored bytes and quantize activations the same way; what
  // differs is summation order, and for F16/BF16/W4A16 the GPU's tensor-core prefill rounding
  // activations (and W4A16's dequantized weights) to 16 bits. W4A16 is paired with an f16 cache
  // (the API's "w4a16"): over an int4 cache those 16-bit roundings flip K/V codes by a whole step
  // (0.3-1 % logit error), which says nothing about the kernels; W4A8 covers the int4 cache.
  const Case cases[] = {
      {DType::F32, DType::F32, KvFormat::F32, 1e-5},      {DType::F16, DType::F16, KvFormat::F16, 5e-3},
      {DType::BF16, DType::BF16, KvFormat::BF16, 2e-2},   {DType::F16, DType::W8A8, KvFormat::Int8, 2e-3},
      {DType::F16, DType::FP8, KvFormat::Fp8E4M3, 2e-3},  {DType::F16, DType::W4A16, KvFormat::F16, 2e-3},
      {DType::F16, DType::W4A8, KvFormat::Int4, 2e-3},
      // Q/K/V biases and tied embeddings (Qwen2).
      {DType::F16, DType::F16, KvFormat::F16, 5e-3, "tiny-qwen2"},
      // A GGUF block type the GPU widens to F16: the CPU quantizes activations to Q8_0 blocks for
      // it, the GPU keeps them in f32 (decode) or f16 (prefill), so they differ by that step.
      {DType::F32, DType::Q8_0, KvFormat::F16, 6e-2},  // measured 2.7e-2 under the emulator
  };
  model::testing::TempDir dir;
  for (const Case& c : cases) {
    const std::string precision = std::string(model::dtype_name(c.weights)) + " + " + kv::format_name(c.kv) + " KV";
    CAPTURE(precision);
    CAPTURE(c.shape);
    auto m = tiny_model(dir, c.file, c.weights, c.kv, c.shape);
    const auto seqs = prompts(m->config.vocab_size);
    std::vector<size_t> prompt_lens;
    for (const auto& s : seqs) prompt_lens.push_back(s.size() - 6);

    Slab host("host");
    Served cpu = serve(*m, host.pool, c.kv, false);
    Slab dev(device_memory());
    Served gpu = serve(*m, dev.pool, c.kv, true);
    auto want = forced_logits(cpu, host.pool, seqs, prompt_lens, 5);
    auto got = forced_logits(gpu, dev.pool, seqs, prompt_lens, 5);
    REQUIRE(got.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      REQUIRE(got[i].size() == want[i].size());
      for (size_t p = 0; p < want[i].size(); ++p) {
        CAPTURE(i);
        CAPTURE(p);
        const double err = rel_error(got[i][p], want[i][p]);
        worst = std::max(worst, err);
        CHECK(err < c.tol);
        if (err < c.tol * 0.01) CHECK(argmax(got[i][p]) == argmax(want[i][p]));
      }
    }
    MESSAGE(precision << " (" << std::string(c.shape) << "): worst logits error against the CPU executor " << worst);
  }
}

TEST_CASE("cuda executor: co-located models stepped concurrently give their logits alone") {
  model::testing::TempDir dir;
  auto a = tiny_model(dir, DType::F16, DType::F16, KvFormat::F16);
  auto b = tiny_model(dir, DType::F32, DType::W4A16, KvFormat::Int4);
  const auto seqs = prompts(a->config.vocab_size);
  std::vector<size_t> prompt_lens;
  for (const auto& s : seqs) prompt_lens.push_back(s.size() - 6);

  // Alone: each in a slab of its own, with the block size it has together (int4 codes K per
  // channel over a block, so its block size is part of its numerics).
  std::vector<std::vector<std::vector<float>>> alone[2];
  {
    Slab sa(device_memory()), sb(device_memory());
    Served ea = serve(*a, sa.pool, KvFormat::F16, true);
    Served eb = serve(*b, sb.pool, KvFormat::Int4, true, 8);
    alone[0] = forced_logits(ea, sa.pool, seqs, prompt_lens, 4);
    alone[1] = forced_logits(eb, sb.pool, seqs, prompt_lens, 4);
  }
  // Together: one slab, two executors (two streams), two host threads at once.
  Slab shared(device_memory());
  Served ea = serve(*a, shared.pool, KvFormat::F16, true);
  Served eb = serve(*b, shared.pool, KvFormat::Int4, true, 8);
  auto blocks_a = blocks_for(ea, shared.pool, seqs), blocks_b = blocks_for(eb, shared.pool, seqs);
  std::vector<std::vector<std::vector<float>>> together[2];
  std::exception_ptr errors[2];
  std::thread ta([&] {
    try {
      together[0] = forced_logits(ea, blocks_a, seqs, prompt_lens, 4);
    } catch (...) {
      errors[0] = std::current_exception();
    }
  });
  std::thread tb([&] {
    try {
      together[1] = forced_logits(eb, blocks_b, seqs, prompt_lens, 4);
    } catch (...) {
      errors[1] = std::current_exception();
    }
  });
  ta.join();
  tb.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  // The kernels are deterministic and the two models share no memory but the slab's free lists.
  for (int k = 0; k < 2; ++k) CHECK(together[k] == alone[k]);
}

TEST_CASE("cuda executor: a malformed batch is refused before anything is written") {
  model::testing::TempDir dir;
  auto m = tiny_model(dir, DType::F16, DType::F16, KvFormat::F16);
  Slab slab(device_memory());
  Served s = serve(*m, slab.pool, KvFormat::F16, true);
  std::vector<kv::BlockId> blocks;
  REQUIRE(slab.pool.alloc(s.id, 1, &blocks).ok);
  const uint64_t block_bytes = slab.pool.layout(s.id).block_bytes;
  const uint64_t offset = slab.pool.block_offset(s.id, blocks[0]);
  std::vector<uint8_t> before(block_bytes), after(block_bytes);
  gpu::copy_to_host(before.data(), slab.pool.base() + offset, block_bytes, nullptr);
  gpu::stream_sync(nullptr);

  const int32_t good[] = {3, 4}, bad[] = {5, static_cast<int32_t>(m->config.vocab_size)};
  engine::SamplingParams p;
  engine::SamplerState st;
  st.reset(m->config.vocab_size, good, 2);
  engine::SequenceChunk c1{good, 2, 0, blocks.data(), 1, true, &p, &st};
  engine::SequenceChunk c2{bad, 2, 0, blocks.data(), 1, false, nullptr, nullptr};
  CHECK_THROWS_WITH_AS(s.exec->step({c1, c2}, false), doctest::Contains("batch[1]: token 512 is outside the vocabulary"),
                       std::invalid_argument);
  gpu::copy_to_host(after.data(), slab.pool.base() + offset, block_bytes, nullptr);
  gpu::stream_sync(nullptr);
  CHECK(before == after);

  Slab accounting("none");
  kv::ModelId id = accounting.pool.add_model({"x", engine::kv_geometry_for(m->config, KvFormat::F16, 16), 0, 0});
  CHECK_THROWS_WITH_AS(gpu::make_cuda_executor(*m, accounting.pool, id, {KvFormat::F16}),
                       doctest::Contains("memory = \"none\""), std::invalid_argument);
  CHECK_THROWS_WITH_AS(gpu::make_cuda_executor(*m, slab.pool, s.id, {KvFormat::Int8}),
                       doctest::Contains("does not match the model's KV geometry"), std::invalid_argument);
}
