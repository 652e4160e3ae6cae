// Executors of two models sharing one ThreadPool, as co-located models on one CPU do: stepping
// from two threads at once they give exactly the tokens each gives alone (the golden stories260K
// continuations), a step waits while another user holds the pool, and the pool lives as long as
// its last executor.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/cpu_executor.h"
#include "engine/thread_pool.h"
#include "kv/kv_slab.h"
#include "model/loader.h"
#include "golden_cases.h"
#include "greedy_batch.h"
#include "model_test_files.h"

using namespace fineserve;
using model::testing::GoldenCase;
using model::testing::golden_cases;
using test::Seq;

namespace {

// One model's executor over its part of a shared slab.
struct Side {
  std::unique_ptr<model::LoadedModel> model;
  kv::ModelId kv_model = 0;
  std::unique_ptr<engine::Executor> exec;
};

constexpr size_t kMaxNew = 64;

// Every golden case as one sequence, blocks allocated here, on the calling thread, because the
// slab's allocator is not for concurrent callers; only the stepping runs on other threads.
std::vector<Seq> prepare(kv::KvSlab& slab, const Side& side) {
  std::vector<Seq> seqs;
  for (const GoldenCase& g : golden_cases()) {
    Seq s(g.prompt);
    REQUIRE(slab.alloc(side.kv_model, static_cast<uint32_t>((s.prompt_len + kMaxNew + 15) / 16), &s.blocks).ok);
    seqs.push_back(std::move(s));
  }
  return seqs;
}

void release(kv::KvSlab& slab, const Side& side, std::vector<Seq>& seqs) {
  for (Seq& s : seqs) slab.free(side.kv_model, s.blocks.data(), s.blocks.size());
}

// Greedy decoding of all sequences in the same steps, prompts entering 3 tokens at a time, so a
// run is well over a hundred steps: many chances for two runs' steps to meet. No doctest
// assertions (nor in run_greedy): this runs on threads doctest does not guard.
void decode(engine::Executor& exec, std::vector<Seq>& seqs) { test::run_greedy(exec, seqs, kMaxNew, 3); }

std::vector<std::vector<int32_t>> outputs(const std::vector<Seq>& seqs) {
  std::vector<std::vector<int32_t>> out;
  for (const Seq& s : seqs) out.push_back(s.generated());
  return out;
}

// The same weights from the GGUF file and from the HF folder: two models to the executor (RoPE
// pairs dims differently in each), with one set of golden outputs.
std::vector<std::string> sources() {
  return {model::testing::require_fixture("stories260K.gguf").string(), model::testing::require_fixture("hf").string()};
}

Side make_side(kv::KvSlab& slab, const std::string& source, const char* name,
               std::shared_ptr<engine::ThreadPool> pool) {
  Side side;
  side.model = model::load_model(source);
  side.kv_model = slab.add_model({name, engine::kv_geometry_for(side.model->config, kv::KvFormat::F32, 16), 0, 0});
  engine::CpuExecutorOptions o;
  o.kv_format = kv::KvFormat::F32;
  o.threads = 2;  // ignored when pool is set
  o.pool = std::move(pool);
  side.exec = engine::make_cpu_executor(*side.model, slab, side.kv_model, o);
  return side;
}

std::vector<std::vector<int32_t>> golden_outputs() {
  std::vector<std::vector<int32_t>> out;
  for (const GoldenCase& g : golden_cases()) out.push_back(g.greedy);
  return out;
}

}  // namespace

TEST_CASE("two models' executors sharing a 2-thread pool, stepping concurrently, give the tokens of each alone") {
  const std::vector<std::vector<int32_t>> golden = golden_outputs();
  kv::KvSlab slab(kv::KvSlabOptions{16ull << 20, 1ull << 20, 0.125, "host"});

  // Alone: each model on a pool of its own, one after the other.
  std::vector<std::vector<std::vector<int32_t>>> alone;
  for (const std::string& source : sources()) {
    Side side = make_side(slab, source, ("alone " + std::to_string(alone.size())).c_str(), nullptr);
    std::vector<Seq> seqs = prepare(slab, side);
    decode(*side.exec, seqs);
    alone.push_back(outputs(seqs));
    release(slab, side, seqs);
    CHECK(alone.back() == golden);
  }

  auto pool = std::make_shared<engine::ThreadPool>(2);
  std::weak_ptr<engine::ThreadPool> watch = pool;
  std::vector<Side> sides;
  sides.push_back(make_side(slab, sources()[0], "gguf", pool));
  sides.push_back(make_side(slab, sources()[1], "hf", pool));
  pool.reset();  // from here on only the executors own it

  // Several rounds, so that the two runs overlap in different ways.
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    std::vector<Seq> a = prepare(slab, sides[0]), b = prepare(slab, sides[1]);
    std::atomic<int> ready{0};
    auto go = [&ready](engine::Executor& exec, std::vector<Seq>& seqs) {
      ++ready;
      while (ready.load() < 2) std::this_thread::yield();  // start together
      decode(exec, seqs);
    };
    std::thread ta(go, std::ref(*sides[0].exec), std::ref(a));
    std::thread tb(go, std::ref(*sides[1].exec), std::ref(b));
    ta.join();
    tb.join();
    CHECK(outputs(a) == alone[0]);
    CHECK(outputs(b) == alone[1]);
    release(slab, sides[0], a);
    release(slab, sides[1], b);
  }

  // The pool outlives the first executor destroyed: the other still steps correctly on it.
  sides[0].exec.reset();
  REQUIRE_FALSE(watch.expired());
  std::vector<Seq> b = prepare(slab, sides[1]);
  decode(*sides[1].exec, b);
  CHECK(outputs(b) == golden);
  release(slab, sides[1], b);
  sides[1].exec.reset();
  CHECK(watch.expired());
}

TEST_CASE("a step waits while another user holds the shared pool") {
  kv::KvSlab slab(kv::KvSlabOptions{16ull << 20, 1ull << 20, 0.125, "host"});
  auto pool = std::make_shared<engine::ThreadPool>(2);
  Side side = make_side(slab, sources()[0], "m", pool);
  std::vector<Seq> seqs = prepare(slab, side);
  std::atomic<bool> done{false};
  std::thread stepper;
  {
    std::unique_lock<std::mutex> held = pool->claim();
    stepper = std::thread([&] {
      decode(*side.exec, seqs);
      done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK_FALSE(done.load());
  }
  stepper.join();
  CHECK(done.load());
  CHECK(outputs(seqs) == golden_outputs());
  release(slab, side, seqs);
}
