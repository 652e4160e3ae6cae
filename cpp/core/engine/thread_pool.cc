#include "engine/thread_pool.h"

#include <algorithm>

#include "cpu_info.h"
#include "simd/upper_state.h"

namespace fineserve::engine {

namespace {

// Range i of n split as evenly as possible into `parts`.
void split(size_t n, unsigned parts, unsigned i, size_t* begin, size_t* end) {
  size_t base = n / parts, extra = n % parts;
  *begin = i * base + std::min<size_t>(i, extra);
  *end = *begin + base + (i < extra ? 1 : 0);
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
  for (unsigned i = 1; i < n; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::worker(unsigned index) {
  unsigned seen = 0;
  for (;;) {
    const std::function<void(size_t, size_t)>* job;
    size_t n;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_size_;
    }
    size_t begin, end;
    split(n, size(), index, &begin, &end);
    if (begin < end) run(*job, begin, end);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  if (workers_.empty() || n == 1) {
    run(fn, 0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_size_ = n;
    pending_ = static_cast<unsigned>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  size_t begin, end;
  split(n, size(), 0, &begin, &end);
  if (begin < end) run(fn, begin, end);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
}

}  // namespace fineserve::engine
