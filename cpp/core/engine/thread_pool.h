// A fixed pool of worker threads for data-parallel kernels. The calling thread works on every job
// too, so a pool of n threads starts n - 1 workers and a pool of 1 runs everything inline. Idle
// workers spin briefly before they sleep, and a job's parts are claimed, not assigned: whoever is
// awake runs them, and nobody waits for a thread that never woke (thread_pool.cc says why).
// Several executors may share one pool (models co-located on one CPU must not together start more
// threads than there are cores); each claims it for a whole step, so their steps take turns.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
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

  // Calls fn(begin, end) over [0, n) split into at most size() contiguous ranges, each run once on
  // whichever thread claims it, and returns when all are done. Not re-entrant: fn must not call
  // parallel_for.
  void parallel_for(size_t n, const std::function<void(size_t begin, size_t end)>& fn);

  // Held by one user of a shared pool for all of its parallel_for calls: parallel_for serves one
  // caller at a time, and a step that holds the pool throughout also keeps its single-threaded
  // parts (validation, sampling) from running beside another step's workers.
  std::unique_lock<std::mutex> claim() { return std::unique_lock<std::mutex>(owner_); }

 private:
  void worker();

  std::vector<std::thread> workers_;
  std::mutex owner_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // Runs the parts of job `generation` that are still unclaimed; false once none is left.
  void drain(uint32_t generation);

  // A job is size() parts. ticket_ holds the job's generation (high 32 bits) and its next
  // unclaimed part (low 32 bits); every thread, the caller included, claims parts from it, so a
  // thread that has not woken up by the time the others are done holds no part and is not waited
  // for. job_ and job_size_ are written before the ticket is raised (release) and read after a
  // part of it is claimed (acquire). running_ counts parts being run by workers. The mutex only
  // guards sleeping on the condition variables.
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_size_ = 0;
  std::atomic<uint64_t> ticket_{0};
  std::atomic<unsigned> running_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace fineserve::engine
