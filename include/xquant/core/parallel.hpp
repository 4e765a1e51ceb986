#pragma once
// A small thread pool for data-parallel loops.
//
// One thread (the caller's) is the default, so embedded users get no threads they did
// not ask for; set_num_threads(n) starts n - 1 persistent workers. parallel_for splits
// [0, n) into at most num_threads() contiguous chunks of at least `grain` items; the
// calling thread runs the first chunk itself. The split depends only on n, grain and
// the thread count, never on timing, so results that depend on the order of a
// reduction are reproducible run to run.

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "xquant/core/error.hpp"

namespace xquant {

class thread_pool {
 public:
  /// Chunks per thread of a parallel_for: one, each thread runs its own contiguous share.
  static constexpr std::size_t chunks_per_thread = 1;

  explicit thread_pool(std::size_t threads = 1) { resize(threads); }
  ~thread_pool() { stop(); }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  std::size_t size() const { return workers_.size() + 1; }

  /// True on a thread that is running a chunk of a job this pool split over its workers.
  /// The pool is not reentrant: parallel_for from such a thread runs the body inline.
  bool in_parallel() const { return active_pool() == this; }

  void resize(std::size_t threads) {
    check(threads >= 1 && threads <= 256, "thread count must be 1..256, got ", threads);
    stop();
    stopping_ = false;
    // New workers start from the current generation: a job that ran before the resize is
    // not theirs to run (job_ is already null).
    const std::size_t start = generation_;
    for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i, start] { worker_loop(i, start); });
  }

  /// Runs body(begin, end) over chunks of [0, n); returns when all chunks are done. At most
  /// max_chunks chunks (0: size()), each of at least `grain` items.
  /// An exception thrown by a chunk is rethrown here (the first one).
  void parallel_for(std::size_t n, std::size_t grain, const std::function<void(std::size_t, std::size_t)>& body,
                    std::size_t max_chunks = 0) {
    if (n == 0) return;
    if (in_parallel() || size() == 1) {  // nested (the workers are busy with the outer job) or serial
      body(0, n);
      return;
    }
    const std::size_t cap = max_chunks ? std::min(max_chunks, size()) : size();
    const std::size_t chunks = std::min(cap, std::max<std::size_t>(1, n / std::max<std::size_t>(1, grain)));
    if (chunks == 1) {  // inline, the workers stay free: a nested call may still use them
      body(0, n);
      return;
    }
    {
      std::unique_lock lock(mutex_);
      job_ = &body;
      job_n_ = n;
      job_chunks_ = chunks;
      pending_ = chunks - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_chunk(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static const thread_pool*& active_pool() {
    thread_local const thread_pool* pool = nullptr;
    return pool;
  }
  struct active_scope {
    explicit active_scope(const thread_pool* p) : previous(active_pool()) { active_pool() = p; }
    ~active_scope() { active_pool() = previous; }
    const thread_pool* previous;
  };

  void run_chunk(std::size_t c) {
    const active_scope scope(this);
    const std::size_t begin = job_n_ * c / job_chunks_;
    const std::size_t end = job_n_ * (c + 1) / job_chunks_;
    (*job_)(begin, end);
  }

  void worker_loop(std::size_t index, std::size_t seen) {
    for (;;) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      if (index >= job_chunks_) continue;
      lock.unlock();
      std::exception_ptr failure;
      try {
        run_chunk(index);
      } catch (...) {
        failure = std::current_exception();
      }
      lock.lock();
      if (failure && !error_) error_ = failure;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void stop() {
    {
      std::unique_lock lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(std::size_t, std::size_t)>* job_ = nullptr;
  std::size_t job_n_ = 0, job_chunks_ = 1, pending_ = 0, generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

/// The process-wide pool used by kernels and ops.
inline thread_pool& default_pool() {
  static thread_pool pool(1);
  return pool;
}
inline void set_num_threads(std::size_t n) { default_pool().resize(n); }
inline std::size_t num_threads() { return default_pool().size(); }

inline void parallel_for(std::size_t n, std::size_t grain, const std::function<void(std::size_t, std::size_t)>& body,
                         std::size_t max_chunks = 0) {
  default_pool().parallel_for(n, grain, body, max_chunks);
}

/// Elementwise loops: chunks of at least this many elements. Below two chunks a loop stays
/// on the calling thread (waking a worker costs more than it saves).
inline constexpr std::size_t elementwise_grain = std::size_t{1} << 15;

/// body(begin, end) over [0, n) for an elementwise loop, on several threads when n is large.
template <class Body>
void parallel_elementwise(std::size_t n, Body&& body) {
  if (n < 2 * elementwise_grain || num_threads() == 1) {
    body(std::size_t{0}, n);
    return;
  }
  parallel_for(n, elementwise_grain, body);
}

}  // namespace xquant
