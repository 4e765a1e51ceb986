#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/minmax_observer.hpp"

using namespace xquant;
using namespace calib_test;

using act_u8 = scheme<unsigned_bits<8>, asymmetric>;
using w8_axis0 = scheme<narrow_bits<8>, symmetric, per_axis<0>>;
using w8_axis1 = scheme<narrow_bits<8>, symmetric, per_axis<1>>;

static_assert(observer<minmax_observer<act_u8>>);
static_assert(observer<minmax_observer<w8_axis0>>);

TEST_CASE("minmax_observer: per-tensor range and params of known data") {
  minmax_observer<act_u8> obs;
  CHECK_FALSE(obs.has_data());
  obs.observe(make_array({-1.0f, 0.5f, 2.0f, 0.25f}));
  REQUIRE(obs.ranges().size() == 1);
  CHECK(obs.ranges()[0] == value_range{-1.0f, 2.0f});
  CHECK(obs.params() == choose_params<act_u8>(-1.0f, 2.0f));
  obs.observe(make_array({3.0f, 0.0f}, {2, 1}));  // any shape for per_tensor
  CHECK(obs.ranges()[0] == value_range{-1.0f, 3.0f});
  CHECK(obs.channels() == 1);
}

TEST_CASE("minmax_observer: Gaussian and uniform data give their sample extremes") {
  const std::vector<float> g = gaussian(50000, 0.0, 1.0, 1);
  const std::vector<float> u = uniform(50000, -3.0, 5.0, 2);
  for (const auto& data : {g, u}) {
    minmax_observer<act_u8> obs;
    obs.observe(make_array(data));
    const auto [lo, hi] = std::minmax_element(data.begin(), data.end());
    CHECK(obs.ranges()[0] == value_range{*lo, *hi});
  }
}

TEST_CASE("minmax_observer: per-axis channels of different scales") {
  // [4, 1000], channel c ~ N(0, scale_c): the ranges scale like the channels.
  const double scales[] = {0.5, 1.0, 2.0, 4.0};
  std::vector<float> values;
  for (unsigned c = 0; c < 4; ++c) {
    const std::vector<float> ch = gaussian(1000, 0.0, scales[c], 20 + c);
    values.insert(values.end(), ch.begin(), ch.end());
  }
  minmax_observer<w8_axis0> obs;
  obs.observe(make_array(values, {4, 1000}));
  const std::vector<value_range> r = obs.ranges();
  REQUIRE(r.size() == 4);
  for (std::size_t c = 0; c < 4; ++c) {
    const auto first = values.begin() + static_cast<std::ptrdiff_t>(c * 1000);
    const auto [lo, hi] = std::minmax_element(first, first + 1000);
    CHECK(r[c] == value_range{*lo, *hi});
  }
  const quant_params p = obs.params();
  CHECK(p.axis == 0);
  CHECK(p.channels() == 4);
  CHECK(p.scale[3] / p.scale[0] == doctest::Approx(8.0).epsilon(0.3));
}

TEST_CASE("minmax_observer: a middle axis walks outer and inner strides") {
  // [3, 2, 5] along axis 1: channel c holds elements (o, c, i) for all o and i.
  const std::vector<float> v = gaussian(30, 0.0, 1.0, 5);
  minmax_observer<w8_axis1> obs;
  obs.observe(make_array(v, {3, 2, 5}));
  std::vector<value_range> expected(2);
  for (std::size_t o = 0; o < 3; ++o)
    for (std::size_t c = 0; c < 2; ++c)
      for (std::size_t i = 0; i < 5; ++i) expected[c].include(v[(o * 2 + c) * 5 + i]);
  CHECK(obs.ranges() == expected);
}

TEST_CASE("minmax_observer: several observe() calls equal one call on the concatenation") {
  const std::vector<float> a = gaussian(3000, 0.0, 1.0, 3);
  const std::vector<float> b = gaussian(3000, 1.0, 3.0, 4);
  minmax_observer<w8_axis0> split, whole;
  split.observe(make_array(a, {3, 1000}));
  split.observe(make_array(b, {3, 1000}));
  // Concatenate along a non-channel axis: [3, 2000] with each channel's two halves.
  std::vector<float> joined;
  for (std::size_t c = 0; c < 3; ++c) {
    const std::vector<float> pa = slice(a, c * 1000, (c + 1) * 1000);
    const std::vector<float> pb = slice(b, c * 1000, (c + 1) * 1000);
    joined.insert(joined.end(), pa.begin(), pa.end());
    joined.insert(joined.end(), pb.begin(), pb.end());
  }
  whole.observe(make_array(joined, {3, 2000}));
  CHECK(split.ranges() == whole.ranges());
  CHECK(split.params() == whole.params());
}

TEST_CASE("minmax_observer: reset forgets everything, including the channel count") {
  minmax_observer<w8_axis0> obs;
  obs.observe(make_array({1, 2, 3, 4}, {2, 2}));
  obs.reset();
  CHECK_FALSE(obs.has_data());
  CHECK_THROWS_AS(obs.ranges(), value_error);
  obs.observe(make_array({1, 2, 3}, {3, 1}));
  CHECK(obs.channels() == 3);
}

TEST_CASE("minmax_observer: bad input gives clear errors and leaves the state unchanged") {
  minmax_observer<w8_axis0> obs;
  SUBCASE("params() and ranges() before any observe()") {
    CHECK(contains(message_of<value_error>([&] { (void)obs.params(); }), "no data observed"));
    CHECK_THROWS_AS(obs.ranges(), value_error);
  }
  obs.observe(make_array({-1, 1, -2, 2}, {2, 2}));
  const std::vector<value_range> before = obs.ranges();
  SUBCASE("NaN") {
    const std::string m = message_of<numeric_error>([&] {
      obs.observe(make_array({0, 1, std::numeric_limits<float>::quiet_NaN(), 5}, {2, 2}));
    });
    CHECK(contains(m, "minmax_observer"));
    CHECK(contains(m, "NaN at flat index 2"));
    CHECK(contains(m, "[1, 0]"));
  }
  SUBCASE("+Inf") {
    CHECK(contains(message_of<numeric_error>([&] {
                     obs.observe(make_array({0, std::numeric_limits<float>::infinity(), 1, 5}, {2, 2}));
                   }),
                   "+Inf at flat index 1"));
  }
  SUBCASE("empty tensor") {
    CHECK(contains(message_of<value_error>([&] { obs.observe(array<float>(shape_t{2, 0})); }), "empty"));
  }
  SUBCASE("axis does not exist") {
    minmax_observer<w8_axis1> axis1;
    CHECK(contains(message_of<shape_error>([&] { axis1.observe(make_array({1, 2, 3})); }), "per_axis<1>"));
  }
  SUBCASE("the channel count changes") {
    CHECK(contains(message_of<shape_error>([&] {
                     obs.observe(make_array({1, 2, 3}, {3, 1}));
                   }),
                   "seen 2 channels along axis 0"));
  }
  SUBCASE("span overload: buffer and shape disagree") {
    const std::vector<float> v{1, 2, 3};
    const shape_t shape{2, 2};
    CHECK_THROWS_AS(obs.observe(v, shape), shape_error);
  }
  CHECK(obs.ranges() == before);
}
