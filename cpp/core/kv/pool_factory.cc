#include "kv/pool_factory.h"

#include "kv/kv_slab.h"
#include "kv/paged_pool.h"
#include "kv/static_pool.h"
#include "kv/unified_pool.h"

namespace fineserve::kv {

std::unique_ptr<KvPool> make_pool(const PoolConfig& c) {
  if (c.policy == "kv-slab") {
    KvSlabOptions o;
    o.pool_bytes = c.pool_bytes;
    o.slab_bytes = c.slab_bytes;
    o.max_tail_fraction = c.max_tail_fraction;
    o.memory = c.memory;
    return std::make_unique<KvSlab>(o);
  }
  if (c.policy == "static") return std::make_unique<StaticPartitionPool>(c.pool_bytes);
  if (c.policy == "unified") return std::make_unique<UnifiedBlockPool>(c.pool_bytes, c.block_bytes);
  if (c.policy == "paged") return std::make_unique<PagedPool>(c.pool_bytes, c.page_bytes, c.map_cost_ns);
  throw KvError(KvErrc::InvalidArgument,
                "policy = \"" + c.policy + "\": expected one of kv-slab, static, unified, paged");
}

}  // namespace fineserve::kv
