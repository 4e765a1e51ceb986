#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/observer_base.hpp"
#include "xquant/core/parallel.hpp"

using namespace xquant;
using namespace calib_test;

namespace {

std::vector<float> iota_values(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i);
  return v;
}

}  // namespace

TEST_CASE("observer_base: index_string names the multi-index of a flat index") {
  const shape_t shape{2, 3, 4};
  CHECK(detail::index_string(0, shape) == "[0, 0, 0]");
  CHECK(detail::index_string(23, shape) == "[1, 2, 3]");
  CHECK(detail::index_string(13, shape) == "[1, 0, 1]");
  CHECK(detail::index_string(0, shape_t{}) == "[]");
}

TEST_CASE("observer_base: scan_batch gives per-channel min/max for every axis") {
  // Values 0..23 in a [2, 3, 4] tensor: brute-force the per-channel extremes.
  const shape_t shape{2, 3, 4};
  const std::vector<float> v = iota_values(24);
  for (int axis = -1; axis < 3; ++axis) {
    CAPTURE(axis);
    const detail::batch_stats s = detail::scan_batch(v, shape, axis, "test");
    const std::size_t channels = axis < 0 ? 1 : shape[static_cast<std::size_t>(axis)];
    REQUIRE(s.ranges.size() == channels);
    std::vector<value_range> expected(channels);
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t j = 0; j < 3; ++j)
        for (std::size_t k = 0; k < 4; ++k) {
          const std::size_t idx[] = {i, j, k};
          const std::size_t c = axis < 0 ? 0 : idx[axis];
          expected[c].include(v[(i * 3 + j) * 4 + k]);
        }
    CHECK(s.ranges == expected);
  }
}

TEST_CASE("observer_base: a large per-tensor scan is split between threads with the same result") {
  // 5 chunks of 2^16 and a partial one; the extremes sit in different chunks.
  const shape_t shape{5 * 65536 + 1234};
  std::vector<float> v(shape[0]);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 7919) % 10007) * 0.01f - 50.0f;
  v[70000] = -123.5f;
  v[v.size() - 3] = 98.25f;
  const detail::batch_stats one = detail::scan_batch(v, shape, -1, "test");
  set_num_threads(2);
  const detail::batch_stats two = detail::scan_batch(v, shape, -1, "test");
  v[200000] = std::numeric_limits<float>::quiet_NaN();
  const std::string m = message_of<numeric_error>([&] { detail::scan_batch(v, shape, -1, "obs"); });
  v[200000] = 0.0f;
  v[1] = -std::numeric_limits<float>::infinity();
  const std::string m_inf = message_of<numeric_error>([&] { detail::scan_batch(v, shape, -1, "obs"); });
  set_num_threads(1);
  CHECK(one.ranges[0] == value_range{-123.5f, 98.25f});
  CHECK(two.ranges == one.ranges);
  CHECK(contains(m, "NaN at flat index 200000"));
  CHECK(contains(m_inf, "-Inf at flat index 1"));
}

TEST_CASE("observer_base: scan_batch rejects bad input with a clear message") {
  const shape_t shape{2, 3};
  std::vector<float> v = iota_values(6);

  SUBCASE("NaN names its flat and multi-index") {
    v[4] = std::numeric_limits<float>::quiet_NaN();
    const std::string m = message_of<numeric_error>([&] { detail::scan_batch(v, shape, -1, "obs"); });
    CHECK(contains(m, "obs"));
    CHECK(contains(m, "NaN at flat index 4"));
    CHECK(contains(m, "[1, 1]"));
    CHECK(contains(m, "[2, 3]"));
  }
  SUBCASE("+Inf and -Inf") {
    v[0] = std::numeric_limits<float>::infinity();
    CHECK(contains(message_of<numeric_error>([&] { detail::scan_batch(v, shape, 0, "obs"); }),
                   "+Inf at flat index 0"));
    v[0] = 0;
    v[5] = -std::numeric_limits<float>::infinity();
    CHECK(contains(message_of<numeric_error>([&] { detail::scan_batch(v, shape, 1, "obs"); }),
                   "-Inf at flat index 5"));
  }
  SUBCASE("empty tensor") {
    const shape_t empty{0, 3};
    const std::string m = message_of<value_error>([&] { detail::scan_batch({}, empty, -1, "obs"); });
    CHECK(contains(m, "empty"));
    CHECK(contains(m, "[0, 3]"));
  }
  SUBCASE("axis out of range") {
    const std::string m = message_of<shape_error>([&] { detail::scan_batch(v, shape, 2, "obs"); });
    CHECK(contains(m, "per_axis<2>"));
    CHECK(contains(m, "rank 2"));
  }
  SUBCASE("buffer size does not match the shape") {
    const shape_t wrong{4, 3};
    CHECK(contains(message_of<shape_error>([&] { detail::scan_batch(v, wrong, -1, "obs"); }), "6 elements"));
  }
}

TEST_CASE("observer_base: channel_count insists on the first channel count") {
  detail::channel_count count;
  const shape_t shape{5, 2};
  CHECK_NOTHROW(count.check_same(5, shape, 0, "obs"));
  count.set(4);
  CHECK_NOTHROW(count.check_same(4, shape, 0, "obs"));
  const std::string m = message_of<shape_error>([&] { count.check_same(5, shape, 0, "obs"); });
  CHECK(contains(m, "seen 4 channels along axis 0"));
  CHECK(contains(m, "[5, 2]"));
  count.reset();
  CHECK_NOTHROW(count.check_same(5, shape, 0, "obs"));
}

TEST_CASE("observer_base: clip_to_seen never widens and keeps choose_params' result") {
  using s8 = scheme<unsigned_bits<8>, asymmetric>;
  const auto same_params = [](value_range a, value_range b) {
    return detail::params_for_range<s8>(a) == detail::params_for_range<s8>(b);
  };
  // Clipping inside the data.
  CHECK(detail::clip_to_seen({-2, 3}, {-5, 6}) == value_range{-2, 3});
  // A proposal wider than the data is cut to the data.
  CHECK(detail::clip_to_seen({-8, 9}, {-5, 6}) == value_range{-5, 6});
  // Positive data [5, 6] clipped at 4: the range collapses to the bound, same params as [0, 4].
  const value_range pos = detail::clip_to_seen({0, 4}, {5, 6});
  CHECK(pos == value_range{4, 4});
  CHECK(same_params(pos, {0, 4}));
  // Negative data [-6, -5] clipped at -4.
  const value_range neg = detail::clip_to_seen({-4, 0}, {-6, -5});
  CHECK(neg == value_range{-4, -4});
  CHECK(same_params(neg, {-4, 0}));
  // Positive data not clipped: [0, 6] becomes [5, 6], which choose_params widens back to [0, 6].
  CHECK(same_params(detail::clip_to_seen({0, 6}, {5, 6}), {0, 6}));
}
