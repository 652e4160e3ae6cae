// Builds any KvPool policy from one config, for the addon, the benchmarks and the tests.
#pragma once

#include <memory>
#include <string>

#include "kv/kv_pool.h"

namespace fineserve::kv {

struct PoolConfig {
  std::string policy = "kv-slab";   // "kv-slab", "static", "unified", "paged"
  uint64_t pool_bytes = 0;
  uint64_t slab_bytes = 0;          // kv-slab: 0 = automatic
  double max_tail_fraction = 0.125; // kv-slab
  std::string memory = "none";      // kv-slab: "none" (accounting only), "host", "cuda:N"
  uint64_t block_bytes = 0;         // unified: the one block size (required)
  uint64_t page_bytes = 2ull << 20; // paged
  uint64_t map_cost_ns = 10000;     // paged: modelled cost of one page map or unmap
};

// Throws KvError(InvalidArgument) naming the field for an unknown policy or a bad size.
std::unique_ptr<KvPool> make_pool(const PoolConfig& config);

}  // namespace fineserve::kv
