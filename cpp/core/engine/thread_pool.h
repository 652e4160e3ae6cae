// A fixed pool of worker threads for data-parallel kernels. The calling thread takes a share of
// every job, so a pool of n threads starts n - 1 workers and a pool of 1 runs everything inline.
// Several executors may share one pool (models co-located on one CPU must not together start more
// threads than there are cores); each claims it for a whole step, so their steps take turns.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fineserve::engine {

class ThreadPool {
 public:
  // threads == 0 means every CPU this process may use; more than that is clamped to it.
  explicit ThreadPool(unsigned threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return static_cast<unsigned>(workers_.size()) + 1; }

  // Calls fn(begin, end) over [0, n) split into at most size() contiguous ranges, one per thread,
  // and returns when all are done. Not re-entrant: fn must not call parallel_for.
  void parallel_for(size_t n, const std::function<void(size_t begin, size_t end)>& fn);

  // Held by one user of a shared pool for all of its parallel_for calls: parallel_for serves one
  // caller at a time, and a step that holds the pool throughout also keeps its single-threaded
  // parts (validation, sampling) from running beside another step's workers.
  std::unique_lock<std::mutex> claim() { return std::unique_lock<std::mutex>(owner_); }

 private:
  void worker(unsigned index);

  std::vector<std::thread> workers_;
  std::mutex owner_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_size_ = 0;
  unsigned generation_ = 0;
  unsigned pending_ = 0;
  bool stop_ = false;
};

}  // namespace fineserve::engine
