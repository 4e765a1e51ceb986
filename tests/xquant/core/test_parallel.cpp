#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <stdexcept>
#include <vector>

#include "xquant/core/parallel.hpp"

using namespace xquant;

TEST_CASE("parallel_for covers 0..n-1 exactly once with any thread count") {
  thread_pool pool(2);
  for (std::size_t n : {0u, 1u, 2u, 3u, 17u, 1000u}) {
    std::vector<int> hits(n, 0);
    pool.parallel_for(n, 1, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) ++hits[i];
    });
    for (int h : hits) REQUIRE(h == 1);
  }
}

TEST_CASE("resizing a pool that has run jobs does not replay an old job") {
  thread_pool pool(2);
  std::atomic<int> total{0};
  for (int round = 0; round < 20; ++round) {
    pool.parallel_for(100, 1, [&](std::size_t b, std::size_t e) { total += static_cast<int>(e - b); });
    pool.resize(1);
    pool.resize(2);
  }
  CHECK(total == 2000);
}

TEST_CASE("a nested parallel_for runs inline, exceptions propagate") {
  thread_pool pool(2);
  std::atomic<int> inner{0};
  pool.parallel_for(4, 1, [&](std::size_t b, std::size_t e) {
    CHECK(pool.in_parallel());
    pool.parallel_for(10, 1, [&](std::size_t ib, std::size_t ie) { inner += static_cast<int>((ie - ib) * (e - b)); });
  });
  CHECK(inner == 40);
  CHECK_THROWS_AS(pool.parallel_for(10, 1, [](std::size_t b, std::size_t) {
    if (b == 0) throw std::runtime_error("boom");
  }), std::runtime_error);
  CHECK_THROWS_AS(pool.resize(0), value_error);
}

TEST_CASE("parallel_for cuts one chunk per thread, or max_chunks, each of at least grain items") {
  thread_pool pool(2);
  auto chunks_of = [&](std::size_t n, std::size_t grain, std::size_t max_chunks) {
    std::vector<std::pair<std::size_t, std::size_t>> seen;
    std::mutex m;
    pool.parallel_for(
        n, grain,
        [&](std::size_t b, std::size_t e) {
          std::lock_guard lock(m);
          seen.emplace_back(b, e);
        },
        max_chunks);
    std::sort(seen.begin(), seen.end());
    return seen;
  };
  CHECK(chunks_of(100, 1, 0).size() == thread_pool::chunks_per_thread * 2);
  CHECK(chunks_of(100, 1, 2) == std::vector<std::pair<std::size_t, std::size_t>>{{0, 50}, {50, 100}});
  CHECK(chunks_of(100, 40, 0).size() == 2);  // at least `grain` items per chunk
  CHECK(chunks_of(3, 1, 0).size() == 2);  // at most one chunk per thread
  thread_pool one(1);
  std::size_t calls = 0;
  one.parallel_for(100, 1, [&](std::size_t b, std::size_t e) {
    ++calls;
    CHECK(b == 0);
    CHECK(e == 100);
  });
  CHECK(calls == 1);
}
