#include "engine/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "cpu_info.h"
#include "simd/upper_state.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fineserve::engine {

namespace {

// Range i of n split as evenly as possible into `parts`.
void split(size_t n, unsigned parts, unsigned i, size_t* begin, size_t* end) {
  size_t base = n / parts, extra = n % parts;
  *begin = i * base + std::min<size_t>(i, extra);
  *end = *begin + base + (i < extra ? 1 : 0);
}

// Waits up to kSpin for `ready`, spinning, before the caller sleeps on a condition variable. A
// decode step runs ~100 jobs of 10-100 us each; waking a sleeping thread took 40-45 us a job on
// this VM (an empty 2-thread parallel_for), more than half of a single-stream F16 step, so 2
// threads decoded slower than 1. Bounded, so a thread whose core another process wants burns at
// most this long per job before it sleeps (llama.cpp's pool spins without bound); and since parts
// are claimed (ThreadPool::drain), nobody waits for a thread that has not woken up. Spinning
// alone, where each worker owned a fixed part, took 2-thread decode under a competing busy loop
// from 103 to 48 tok/s; with claimed parts it is 111.
constexpr auto kSpin = std::chrono::microseconds(100);

template <class Ready>
bool spin_until(Ready ready) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (unsigned i = 0;; ++i) {
    if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) return false;
  }
}

// Jobs are kernels; the code after them is baseline code (simd/upper_state.h says why it must
// find the upper register halves clean).
void run(const std::function<void(size_t, size_t)>& fn, size_t begin, size_t end) {
  fn(begin, end);
  simd::clean_upper();
}

}  // namespace

ThreadPool::ThreadPool(unsigned threads) {
  unsigned cores = static_cast<unsigned>(usable_cores());
  unsigned n = threads == 0 ? cores : std::min(threads, cores);
  for (unsigned i = 1; i < n; ++i) workers_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::drain(uint32_t generation) {
  const unsigned parts = size();
  for (uint64_t t = ticket_.load(std::memory_order_acquire);;) {
    if (static_cast<uint32_t>(t >> 32) != generation || static_cast<uint32_t>(t) >= parts) return;
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    size_t begin, end;
    split(job_size_, parts, static_cast<unsigned>(t & 0xffffffffu), &begin, &end);
    if (begin < end) run(*job_, begin, end);
    t = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker() {
  uint32_t seen = 0;
  const auto woken = [&] {
    return stop_.load(std::memory_order_acquire) || static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32) != seen;
  };
  for (;;) {
    if (!spin_until(woken)) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, woken);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32);
    // Counted before claiming, so the caller, which waits for running_ to reach 0 after the last
    // part is claimed, cannot return while this thread still runs one.
    running_.fetch_add(1, std::memory_order_acq_rel);
    drain(seen);
    if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // Under the mutex: the caller tests running_ under it before it sleeps, so it cannot miss this.
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  if (workers_.empty() || n == 1) {
    run(fn, 0, n);
    return;
  }
  job_ = &fn;
  job_size_ = n;
  const uint32_t generation = static_cast<uint32_t>(ticket_.load(std::memory_order_relaxed) >> 32) + 1;
  {
    // Raised under the mutex, so a worker that tested it there before sleeping gets the notify.
    std::lock_guard<std::mutex> lock(mutex_);
    ticket_.store(static_cast<uint64_t>(generation) << 32, std::memory_order_release);
  }
  wake_.notify_all();
  drain(generation);
  // Every part is claimed; wait for the workers still running theirs (none that never woke).
  const auto done = [&] { return running_.load(std::memory_order_acquire) == 0; };
  if (spin_until(done)) return;
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, done);
}

}  // namespace fineserve::engine
