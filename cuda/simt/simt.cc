// The fiber scheduler behind simt.h: a block's threads are ucontext fibers on the calling OS
// thread, resumed round robin, each running until it reaches a barrier (or returns). A fiber that
// waits is not resumed until its barrier's generation moves, so each barrier costs one switch per
// thread. A full round in which no fiber could run is a deadlock: some thread returned, or waits
// at another barrier, while others wait here.
#include "simt.h"

#include <ucontext.h>

#include <exception>
#include <memory>
#include <vector>

namespace simt {

thread_local ThreadCoords coords;

namespace {

constexpr size_t kStackBytes = 256 * 1024;

struct Barrier {
  uint32_t expected = 0;
  uint32_t arrived = 0;
  uint64_t generation = 0;
};

struct Warp {
  Barrier barrier;
  uint32_t lanes = 0;
  uint64_t slots[32] = {};
  unsigned char items[32][32] = {};
};

struct Fiber {
  ucontext_t context{};
  std::unique_ptr<char[]> stack;
  uint3 thread_idx{};
  uint32_t linear = 0;
  bool done = false;
  const uint64_t* waiting_on = nullptr;  // a barrier's generation, while waiting
  uint64_t seen = 0;
};

struct BlockRun {
  const std::function<void()>* body = nullptr;
  ucontext_t scheduler{};
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  Barrier block_barrier;
  std::vector<unsigned char> smem;
  size_t current = 0;
  std::exception_ptr error;
};

thread_local BlockRun* run = nullptr;

Fiber& self() { return run->fibers[run->current]; }

void arrive(Barrier& b) {
  const uint64_t seen = b.generation;
  if (++b.arrived == b.expected) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  Fiber& f = self();
  f.waiting_on = &b.generation;
  f.seen = seen;
  swapcontext(&f.context, &run->scheduler);
}

Warp& own_warp() { return run->warps[self().linear / 32]; }

void fiber_entry() {
  try {
    (*run->body)();
  } catch (...) {
    if (!run->error) run->error = std::current_exception();
  }
  self().done = true;
  // Returning resumes uc_link, the scheduler.
}

std::string dims(uint3 d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

}  // namespace

void sync_block() {
  if (run == nullptr) throw SimtError("__syncthreads() outside a kernel");
  arrive(run->block_barrier);
}

void sync_warp() {
  if (run == nullptr) throw SimtError("__syncwarp() outside a kernel");
  arrive(own_warp().barrier);
}

void* dynamic_smem() {
  if (run == nullptr) throw SimtError("dynamic shared memory outside a kernel");
  return run->smem.data();
}

int lane_id() { return static_cast<int>(self().linear % 32); }

uint64_t exchange(uint64_t mine, int src) {
  Warp& w = own_warp();
  const int lane = lane_id();
  w.slots[lane] = mine;
  arrive(w.barrier);
  const uint64_t got = src >= 0 && static_cast<uint32_t>(src) < w.lanes ? w.slots[src] : mine;
  arrive(w.barrier);  // nobody overwrites a slot before every lane has read
  return got;
}

void gather_warp(const void* mine, size_t bytes, void* all) {
  if (bytes > 32) throw SimtError("gather_warp moves at most 32 bytes per lane");
  Warp& w = own_warp();
  std::memcpy(w.items[lane_id()], mine, bytes);
  arrive(w.barrier);
  for (uint32_t l = 0; l < 32; ++l) {
    std::memcpy(static_cast<unsigned char*>(all) + l * bytes, l < w.lanes ? w.items[l] : w.items[lane_id()], bytes);
  }
  arrive(w.barrier);
}

namespace {

// Kept out of launch(): a function that calls swapcontext may have its locals clobbered (as
// with setjmp), so the block loop's counters live in the caller.
void run_block(BlockRun& r, uint3 bidx, dim3 block, dim3 grid, const char* name) {
  const uint32_t threads = static_cast<uint32_t>(r.fibers.size());
  for (uint32_t i = 0; i < threads; ++i) {
    Fiber& f = r.fibers[i];
    f.linear = i;
    f.thread_idx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    f.done = false;
    f.waiting_on = nullptr;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &r.scheduler;
    makecontext(&f.context, fiber_entry, 0);
  }
  for (Warp& w : r.warps) w.barrier.arrived = 0;
  r.block_barrier.arrived = 0;
  uint32_t live = threads;
  while (live > 0) {
    bool progressed = false;
    for (size_t i = 0; i < threads; ++i) {
      Fiber& f = r.fibers[i];
      if (f.done) continue;
      if (f.waiting_on != nullptr && *f.waiting_on == f.seen) continue;
      f.waiting_on = nullptr;
      r.current = i;
      coords = ThreadCoords{f.thread_idx, bidx, block, grid};
      swapcontext(&r.scheduler, &f.context);
      progressed = true;
      if (f.done) --live;
      if (r.error) std::rethrow_exception(r.error);
    }
    if (!progressed) {
      uint32_t returned = 0;
      for (const Fiber& f : r.fibers) returned += f.done ? 1 : 0;
      throw SimtError(std::string(name) + ", block " + dims(bidx) + ": deadlock at a barrier (" +
                      std::to_string(threads - returned) + " of " + std::to_string(threads) + " threads wait, " +
                      std::to_string(returned) +
                      " returned or wait at another barrier; every thread of a block must reach each "
                      "__syncthreads, every lane of a warp each shuffle)");
    }
  }
}

}  // namespace

void launch(dim3 grid, dim3 block, size_t smem_bytes, const char* name, const std::function<void()>& body) {
  if (run != nullptr) throw SimtError(std::string(name) + ": a kernel launched from inside a kernel");
  const uint32_t threads = block.x * block.y * block.z;
  if (threads == 0 || threads > 1024) {
    throw SimtError(std::string(name) + ": " + std::to_string(threads) + " threads per block (CUDA allows 1..1024)");
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) throw SimtError(std::string(name) + ": an empty grid");
  BlockRun r;
  r.body = &body;
  r.fibers.resize(threads);
  for (Fiber& f : r.fibers) f.stack.reset(new char[kStackBytes]);
  r.warps.resize((threads + 31) / 32);
  for (uint32_t w = 0; w < r.warps.size(); ++w) {
    r.warps[w].lanes = std::min<uint32_t>(32, threads - w * 32);
    r.warps[w].barrier.expected = r.warps[w].lanes;
  }
  r.block_barrier.expected = threads;
  // Shared memory is not cleared on a GPU: poisoning it with 0xFF (NaN as float) makes a read
  // before the write visible in the results.
  r.smem.assign(smem_bytes, 0xFF);
  run = &r;
  struct Reset {
    ~Reset() {
      run = nullptr;
      coords = ThreadCoords{};
    }
  } reset;

  for (uint32_t bz = 0; bz < grid.z; ++bz) {
    for (uint32_t by = 0; by < grid.y; ++by) {
      for (uint32_t bx = 0; bx < grid.x; ++bx) run_block(r, uint3{bx, by, bz}, block, grid, name);
    }
  }
}

}  // namespace simt
