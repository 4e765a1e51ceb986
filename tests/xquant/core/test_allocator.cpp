#include <doctest/doctest.h>

#include <cstdint>

#include "xquant/core/tensor.hpp"

using namespace xquant;

TEST_CASE("size classes round up by at most a quarter") {
  using detail::block_cache;
  CHECK(block_cache::size_class(4096) == 4096);
  CHECK(block_cache::size_class(4097) == 5120);
  CHECK(block_cache::size_class(5000) == 5120);
  CHECK(block_cache::size_class(8191) == 8192);
  for (std::size_t n = 4096; n < 1'000'000; n = n * 3 / 2 + 7) {
    const std::size_t c = block_cache::size_class(n);
    REQUIRE(c >= n);
    REQUIRE(c - n <= n / 4 + 1);
  }
}

TEST_CASE("freed large buffers are reused, aligned, and can be released") {
  release_cached_memory();
  const float* first = nullptr;
  {
    array<float> a(shape_t{128, 32, 28, 28}, 1.f);
    first = a.data();
    CHECK(reinterpret_cast<std::uintptr_t>(a.data()) % 64 == 0);
  }
  CHECK(cached_memory() >= 128u * 32 * 28 * 28 * sizeof(float));
  {
    array<float> b(shape_t{128, 32, 28, 28}, 2.f);
    CHECK(b.data() == first);  // the same block came back
    CHECK(b(5, 3, 2, 1) == 2.f);
  }
  release_cached_memory();
  CHECK(cached_memory() == 0);
}

TEST_CASE("the cache limit is respected") {
  release_cached_memory();
  set_cache_limit(0);
  { array<float> a(shape_t{100000}, 0.f); }
  CHECK(cached_memory() == 0);
  set_cache_limit(std::size_t{4} << 30);
  { array<float> a(shape_t{100000}, 0.f); }
  CHECK(cached_memory() > 0);
  release_cached_memory();
}
