// The fiber scheduler behind simt.h: a block's threads are fibers (own stacks, switched by hand) on the calling OS
// thread, resumed round robin, each running until it reaches a barrier (or returns). A fiber that
// waits is not resumed until its barrier's generation moves, so each barrier costs one switch per
// thread. A full round in which no fiber could run is a deadlock: some thread returned, or waits
// at another barrier, while others wait here.
#include "simt.h"

#include <exception>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif
#include <memory>
#include <vector>

namespace simt {

thread_local ThreadCoords coords;

namespace {

constexpr size_t kStackBytes = 256 * 1024;

// The fiber switch. glibc's swapcontext saves and restores the signal mask with a system call on
// every switch, which made the emulator's barriers cost more than the kernels' arithmetic; this
// one saves only what the x86-64 System V ABI says a callee must preserve (rbx, rbp, r12-r15, the
// SSE control word and the x87 control word) on the old stack and swaps stack pointers.
#if !defined(__x86_64__)
#error "the SIMT emulator's fiber switch is written for x86-64"
#endif
extern "C" void simt_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl simt_switch
  .type simt_switch, @function
simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size simt_switch, .-simt_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");

// A stack pointer that simt_switch can load to start `entry` on a fresh stack: the saved
// registers (zero), default control words, and `entry` as the return address, placed so that
// entry starts with the stack aligned as after a call.
void* prepare_stack(char* stack, size_t bytes, void (*entry)()) {
#if defined(__SANITIZE_ADDRESS__)
  // A fiber never returns, so AddressSanitizer's redzones of its last frames stay poisoned in
  // the reused stack; a fresh fiber starts with a clean one.
  __asan_unpoison_memory_region(stack, bytes);
#endif
  auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15};
  auto* slot = reinterpret_cast<uint64_t*>(top - 16);  // the return address lands 16-aligned
  slot[0] = reinterpret_cast<uint64_t>(entry);
  slot[1] = 0;
  uint64_t* sp = slot - 7;  // rbp, rbx, r12..r15 and the control words below it
  for (int i = 1; i < 7; ++i) sp[i] = 0;
  const uint32_t mxcsr = 0x1F80;
  const uint16_t fpucw = 0x037F;
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  return sp;
}

struct Barrier {
  uint32_t expected = 0;
  uint32_t arrived = 0;
  uint64_t generation = 0;
};

struct Warp {
  Barrier barrier;
  uint32_t lanes = 0;
  // Shuffles alternate between two slot sets: a lane can write the next set only after the
  // barrier every lane passes once it has read the current one, so one barrier per shuffle does.
  uint64_t slots[2][32] = {};
  uint32_t parity[32] = {};
  unsigned char items[32][32] = {};
};

struct Fiber {
  void* sp = nullptr;
  std::unique_ptr<char[]> stack;
  uint3 thread_idx{};
  uint32_t linear = 0;
  bool done = false;
  const uint64_t* waiting_on = nullptr;  // a barrier's generation, while waiting
  uint64_t seen = 0;
};

struct BlockRun {
  const std::function<void()>* body = nullptr;
  void* scheduler_sp = nullptr;
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
  simt_switch(&f.sp, run->scheduler_sp);
}

Warp& own_warp() { return run->warps[self().linear / 32]; }

// Where every fiber starts; it never returns (there is no frame to return to), it hands control
// back to the scheduler for good.
void fiber_entry() {
  try {
    (*run->body)();
  } catch (...) {
    if (!run->error) run->error = std::current_exception();
  }
  Fiber& f = self();
  f.done = true;
  simt_switch(&f.sp, run->scheduler_sp);
  __builtin_unreachable();
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
  const uint32_t set = w.parity[lane];
  w.parity[lane] ^= 1u;
  w.slots[set][lane] = mine;
  arrive(w.barrier);
  return src >= 0 && static_cast<uint32_t>(src) < w.lanes ? w.slots[set][src] : mine;
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

void run_block(BlockRun& r, uint3 bidx, dim3 block, dim3 grid, const char* name) {
  const uint32_t threads = static_cast<uint32_t>(r.fibers.size());
  for (uint32_t i = 0; i < threads; ++i) {
    Fiber& f = r.fibers[i];
    f.linear = i;
    f.thread_idx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    f.done = false;
    f.waiting_on = nullptr;
    f.sp = prepare_stack(f.stack.get(), kStackBytes, fiber_entry);
  }
  for (Warp& w : r.warps) {
    w.barrier.arrived = 0;
    for (uint32_t& p : w.parity) p = 0;
  }
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
      simt_switch(&r.scheduler_sp, f.sp);
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
