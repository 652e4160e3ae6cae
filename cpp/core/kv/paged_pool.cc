#include "kv/paged_pool.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <string>

namespace fineserve::kv {

namespace {

std::string bytes_str(uint64_t b) { return std::to_string(b) + " bytes"; }

// Calls visit(x) for the elements of a std::greater min-heap in ascending order until it returns
// false. Only the visited elements and their children are touched (O(k log k) for k visits), so
// a check that stops early never sorts the whole free list.
template <class Visit>
void visit_ascending(const std::vector<uint32_t>& heap, Visit visit) {
  if (heap.empty()) return;
  auto later = [&heap](size_t a, size_t b) { return heap[a] > heap[b]; };
  std::priority_queue<size_t, std::vector<size_t>, decltype(later)> frontier(later);
  frontier.push(0);
  while (!frontier.empty()) {
    size_t pos = frontier.top();
    frontier.pop();
    if (!visit(heap[pos])) return;
    for (size_t child = 2 * pos + 1; child <= 2 * pos + 2 && child < heap.size(); ++child) {
      frontier.push(child);
    }
  }
}

uint64_t checked_page_bytes(uint64_t page_bytes) {
  if (page_bytes == 0) {
    throw KvError(KvErrc::InvalidArgument, "pageBytes = 0: the paged pool needs its page size");
  }
  return page_bytes;
}

}  // namespace

PagedPool::PagedPool(uint64_t pool_bytes, uint64_t page_bytes, uint64_t map_cost_ns)
    : PoolBase(pool_bytes),
      page_bytes_(checked_page_bytes(page_bytes)),
      map_cost_ns_(map_cost_ns),
      num_pages_(pool_bytes / page_bytes),
      free_pages_(num_pages_) {
  if (num_pages_ == 0) {
    throw KvError(KvErrc::InvalidArgument, "pageBytes = " + std::to_string(page_bytes) +
                                               ": larger than poolBytes = " + std::to_string(pool_bytes));
  }
}

ModelId PagedPool::add_model(const ModelOptions& options) {
  // Checked before the model is registered so a rejected model leaves no trace; an invalid
  // geometry is left for insert_model to report in the shared wording.
  if (validate(options.geometry).empty()) {
    uint64_t block_bytes = make_layout(options.geometry).block_bytes;
    uint64_t pages = (block_bytes + page_bytes_ - 1) / page_bytes_;  // block 0 starts on a page
    if (pages > num_pages_) {
      throw KvError(KvErrc::OversizeGeometry,
                    "model \"" + options.name + "\": a KV block of " + bytes_str(block_bytes) +
                        " needs " + std::to_string(pages) + " pages of " + bytes_str(page_bytes_) +
                        " but the pool has " + std::to_string(num_pages_) +
                        "; use fewer tokensPerBlock or a larger poolBytes");
    }
  }
  ModelId id = insert_model(options);
  if (spaces_.size() <= id) spaces_.resize(id + 1);
  spaces_[id] = Space{};
  return id;
}

void PagedPool::remove_model(ModelId id) {
  model(id);  // throws UnknownModel
  Space& s = spaces_[id];
  // Every mapped page is unmapped, one driver call each, as when an engine releases its range.
  map_calls_ += s.mapped_pages;
  free_pages_ += s.mapped_pages;
  s = Space{};
  erase_model(id);
}

uint64_t PagedPool::placeable(const Space& s, uint64_t block_bytes, uint64_t limit) const {
  const uint64_t page = page_bytes_;
  const uint64_t freed = s.free_below.size();
  // Every virtual page up to `top` is touched by some index below `high`, and every mapped page
  // lies there, so the pages below `high` no live block touches are exactly the ones the freed
  // indices would need: `unmapped` of them, known without looking at the free list.
  const uint64_t top = s.high == 0 ? 0 : (s.high * block_bytes - 1) / page + 1;  // pages [0, top)
  const uint64_t unmapped = top - s.mapped_pages;
  if (unmapped <= free_pages_) {
    if (limit <= freed) return limit;
    // Fresh indices from `high` on start in page `top` or in one already mapped or charged, so
    // blocks high .. high+k-1 fit iff they end below page top + (the pages left).
    uint64_t end_block = (top + free_pages_ - unmapped) * page / block_bytes;
    uint64_t fresh = end_block > s.high ? end_block - s.high : 0;
    return freed + std::min(fresh, limit - freed);
  }
  // The pool is nearly full: not every freed index can be backed, so walk them in order until
  // one needs a page there is none for. Pages below `next_page` are mapped or already charged.
  uint64_t budget = free_pages_;
  uint64_t count = 0;
  uint64_t next_page = 0;
  visit_ascending(s.free_below, [&](uint64_t j) {
    if (count >= limit) return false;
    uint64_t first = std::max(j * block_bytes / page, next_page);
    uint64_t last = ((j + 1) * block_bytes - 1) / page;
    uint64_t need = 0;
    for (uint64_t p = first; p <= last; ++p) need += s.page_refs[p] == 0 ? 1 : 0;
    if (need > budget) return false;
    budget -= need;
    next_page = std::max(next_page, last + 1);
    count++;
    return true;
  });
  return count;
}

void PagedPool::map_block(Space& s, uint64_t block_bytes, uint64_t j) {
  uint64_t last = ((j + 1) * block_bytes - 1) / page_bytes_;
  if (s.page_refs.size() <= last) s.page_refs.resize(last + 1, 0);
  for (uint64_t p = j * block_bytes / page_bytes_; p <= last; ++p) {
    if (s.page_refs[p]++ == 0) {
      s.mapped_pages++;
      free_pages_--;
      map_calls_++;
    }
  }
}

void PagedPool::unmap_block(Space& s, uint64_t block_bytes, uint64_t j) {
  uint64_t last = ((j + 1) * block_bytes - 1) / page_bytes_;
  for (uint64_t p = j * block_bytes / page_bytes_; p <= last; ++p) {
    if (--s.page_refs[p] == 0) {
      s.mapped_pages--;
      free_pages_++;
      map_calls_++;
    }
  }
}

uint64_t PagedPool::available_blocks(ModelId id) const {
  const Model& m = model(id);
  return placeable(spaces_[id], m.layout.block_bytes, UINT64_MAX);
}

AllocResult PagedPool::alloc(ModelId id, uint32_t n, std::vector<BlockId>* out) {
  Model& m = model(id);
  Space& s = spaces_[id];
  const uint64_t block_bytes = m.layout.block_bytes;
  if (placeable(s, block_bytes, n) < n) {
    record_oom(m);
    return {false, available_blocks(id)};
  }
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t j;
    if (!s.free_below.empty()) {
      std::pop_heap(s.free_below.begin(), s.free_below.end(), std::greater<uint32_t>());
      j = s.free_below.back();
      s.free_below.pop_back();
    } else {
      j = s.high++;
      s.live.push_back(0);
    }
    s.live[j] = 1;
    map_block(s, block_bytes, j);
    out->push_back(static_cast<BlockId>(j));
  }
  record_alloc(m, n, s.mapped_pages * page_bytes_, (num_pages_ - free_pages_) * page_bytes_);
  return {true, available_blocks(id)};
}

uint64_t PagedPool::locate(const Model& m, const Space& s, BlockId id) const {
  if (id >= s.high) throw_bad_id(KvErrc::ForeignBlock, m, id, "was never handed out to this model");
  require_live(m, id, s.live[id]);
  return id;
}

void PagedPool::free(ModelId id, const BlockId* ids, size_t n) {
  Model& m = model(id);
  Space& s = spaces_[id];
  claim_all(
      ids, n, &free_scratch_,
      [&](BlockId block) {
        uint64_t j = locate(m, s, block);
        s.live[j] = kClaimed;
        return j;
      },
      [&](uint64_t j) { s.live[j] = kLive; });
  const uint64_t block_bytes = m.layout.block_bytes;
  for (uint64_t j : free_scratch_) {
    s.live[j] = 0;
    s.free_below.push_back(static_cast<uint32_t>(j));
    std::push_heap(s.free_below.begin(), s.free_below.end(), std::greater<uint32_t>());
    unmap_block(s, block_bytes, j);
  }
  record_free(m, n);
}

uint64_t PagedPool::block_offset(ModelId id, BlockId block) const {
  const Model& m = model(id);
  return locate(m, spaces_[id], block) * m.layout.block_bytes;
}

PoolStats PagedPool::stats() const {
  PoolStats pool;
  for (ModelId id = 0; id < models().size(); ++id) {
    if (!models()[id].active) continue;
    const Space& sp = spaces_[id];
    ModelStats s = base_stats(id);
    const uint64_t b = models()[id].layout.block_bytes;
    s.block_bytes = b;
    s.blocks_per_slab = 0;
    s.slabs_held = sp.mapped_pages;
    s.held_bytes = sp.mapped_pages * page_bytes_;
    s.internal_bytes = s.live_blocks * b - s.live_token_bytes;
    // Mapped page bytes no live block covers: only this model can use them.
    s.external_bytes = s.held_bytes - s.live_blocks * b;
    s.tail_bytes = 0;
    pool.models.push_back(std::move(s));
  }
  pool.slab_bytes = page_bytes_;
  pool.num_slabs = num_pages_;
  pool.free_slabs = free_pages_;
  pool.free_bytes = free_pages_ * page_bytes_;
  pool.unusable_bytes = pool_bytes() - num_pages_ * page_bytes_;
  pool.map_calls = map_calls_;
  pool.map_cost_ns = map_calls_ * map_cost_ns_;
  finish_pool_stats(&pool);
  return pool;
}

}  // namespace fineserve::kv
