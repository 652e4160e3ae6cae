// Drives the CPU executor over a KvSlab of its own for tests that compare its logits with a
// reference: a prompt as one prefill chunk, as two uneven chunks, or token by token.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/cpu_executor.h"
#include "kv/kv_slab.h"
#include "model/loader.h"

namespace fineserve::test {

enum class Mode { Prefill, TwoChunks, Decode };
inline const char* mode_name(Mode m) { return m == Mode::Prefill ? "prefill" : m == Mode::TwoChunks ? "two chunks" : "decode"; }

// Logits from the CPU executor fed `tokens` in the given way: the last position's, or with
// Decode and `every_position`, each position's.
inline std::vector<std::vector<float>> run_executor(const model::LoadedModel& m, kv::KvFormat format,
                                             const std::vector<int32_t>& tokens, Mode mode,
                                             bool every_position = false) {
  const uint32_t tpb = 16;
  kv::KvGeometry g = engine::kv_geometry_for(m.config, format, tpb);
  const uint64_t block_bytes = kv::make_layout(g).block_bytes;
  const uint32_t n_blocks = static_cast<uint32_t>((tokens.size() + tpb - 1) / tpb);
  kv::KvSlabOptions so;
  so.slab_bytes = std::max<uint64_t>(2u << 20, block_bytes * 4);
  so.pool_bytes = so.slab_bytes * (n_blocks + 1);
  so.memory = "host";
  kv::KvSlab slab(so);
  kv::ModelOptions mo;
  mo.name = "ref";
  mo.geometry = g;
  kv::ModelId id = slab.add_model(mo);
  std::vector<kv::BlockId> blocks;
  REQUIRE(slab.alloc(id, n_blocks, &blocks).ok);
  // Logical block order unlike physical order, so positions must go through the table.
  std::reverse(blocks.begin(), blocks.end());

  engine::CpuExecutorOptions eo;
  eo.kv_format = format;
  eo.threads = 2;  // the project rule is 1 for tiny fixtures; these are real-width layers
  std::unique_ptr<engine::Executor> ex = engine::make_cpu_executor(m, slab, id, eo);

  engine::SamplingParams greedy;
  engine::SamplerState state;
  state.reset(m.config.vocab_size, tokens.data(), static_cast<uint32_t>(tokens.size()));
  const uint32_t n = static_cast<uint32_t>(tokens.size());
  std::vector<std::vector<float>> out;
  auto chunk = [&](uint32_t begin, uint32_t end) {
    engine::SequenceChunk c;
    c.tokens = tokens.data() + begin;
    c.n_tokens = end - begin;
    c.position = begin;
    c.block_table = blocks.data();
    c.n_blocks = n_blocks;
    c.sample = end == n || every_position;
    c.sampling = &greedy;
    c.sampler_state = &state;
    engine::StepOutput step = ex->step({c}, c.sample);
    if (c.sample) {
      REQUIRE(step.logits.size() == m.config.vocab_size);
      out.push_back(std::move(step.logits));
    }
  };
  if (mode == Mode::Prefill) {
    chunk(0, n);
  } else if (mode == Mode::TwoChunks) {
    chunk(0, n / 2 + 1);  // uneven, so the second chunk starts mid-block
    chunk(n / 2 + 1, n);
  } else {
    for (uint32_t i = 0; i < n; ++i) chunk(i, i + 1);
  }
  return out;
}

}  // namespace fineserve::test
