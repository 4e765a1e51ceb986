#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/histogram_observer.hpp"
#include "xquant/calib/minmax_observer.hpp"

using namespace xquant;
using namespace calib_test;

using act_u8 = scheme<unsigned_bits<8>, asymmetric>;
using sym8 = scheme<signed_bits<8>, symmetric>;
using w8_axis0 = scheme<narrow_bits<8>, symmetric, per_axis<0>>;
using a8_axis1 = scheme<unsigned_bits<8>, asymmetric, per_axis<1>>;

static_assert(observer<histogram_observer<act_u8>>);
static_assert(observer<histogram_observer<w8_axis0>>);

namespace {

// The k-th smallest value (1-based) for k = ceil(q n): the order statistic the
// histogram's quantile is within one bin of.
float order_statistic(std::vector<float> v, double q) {
  std::sort(v.begin(), v.end());
  const auto k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::max<std::size_t>(k, 1) - 1];
}

std::vector<float> magnitudes(std::vector<float> v) {
  for (float& x : v) x = std::fabs(x);
  return v;
}

}  // namespace

TEST_CASE("histogram_observer: asymmetric percentile range against sorted-data quantiles") {
  const std::vector<float> x = gaussian(100003, 0.3, 1.5, 11);
  for (const double p : {99.99, 99.9, 99.0, 90.0}) {
    CAPTURE(p);
    histogram_observer<act_u8> obs(p);
    obs.observe(make_array(x));
    const value_range r = obs.ranges()[0];
    const double w = obs.channel_histogram(0).bin_width();
    const double tail = (1.0 - p / 100.0) / 2.0;
    CHECK(std::fabs(r.min - order_statistic(x, tail)) <= w);
    CHECK(std::fabs(r.max - order_statistic(x, 1.0 - tail)) <= w);
  }
}

TEST_CASE("histogram_observer: symmetric percentile of |x| against the sorted magnitudes") {
  const std::vector<float> x = gaussian(100003, 0.0, 2.0, 12);
  for (const double p : {99.99, 99.9, 99.0}) {
    CAPTURE(p);
    histogram_observer<sym8> obs(p);
    obs.observe(make_array(x));
    const value_range r = obs.ranges()[0];
    CHECK(r.min == -r.max);
    CHECK(std::fabs(r.max - order_statistic(magnitudes(x), p / 100.0)) <=
          obs.channel_histogram(0).bin_width());
  }
  // Known distribution: the 99.9th percentile of |N(0, 2)| is 2 * 3.2905.
  histogram_observer<sym8> obs(99.9);
  obs.observe(make_array(x));
  CHECK(obs.ranges()[0].max == doctest::Approx(2 * 3.2905).epsilon(0.03));
}

TEST_CASE("histogram_observer: percentile 100 is the min/max range") {
  const std::vector<float> x = gaussian(20000, 1.0, 1.0, 13);
  histogram_observer<act_u8> hist(100.0);
  minmax_observer<act_u8> mm;
  hist.observe(make_array(x));
  mm.observe(make_array(x));
  CHECK(hist.ranges() == mm.ranges());
  histogram_observer<sym8> sym(100.0);
  sym.observe(make_array(x));
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  CHECK(sym.ranges()[0].max == std::max(std::fabs(*lo), std::fabs(*hi)));
}

TEST_CASE("histogram_observer: uniform data, ReLU outputs and outliers") {
  SUBCASE("uniform [-1, 3]: the central 99 % is [-0.98, 2.98]") {
    histogram_observer<act_u8> obs(99.0);
    obs.observe(make_array(uniform(100000, -1.0, 3.0, 14)));
    CHECK(obs.ranges()[0].min == doctest::Approx(-0.98).epsilon(0.02));
    CHECK(obs.ranges()[0].max == doctest::Approx(2.98).epsilon(0.01));
  }
  SUBCASE("ReLU'd Gaussian: the lower end stays at 0") {
    histogram_observer<act_u8> obs(99.9);
    obs.observe(make_array(relu(gaussian(100000, 0.0, 1.0, 15))));
    // The 0.05 % quantile is one of the zeros; the histogram places it within the first
    // bin, and choose_params widens to 0 anyway: the zero point is exactly 0.
    CHECK(obs.ranges()[0].min >= 0.0f);
    CHECK(obs.ranges()[0].min <= obs.channel_histogram(0).bin_width());
    CHECK(obs.params().zero_point[0] == 0);
    // Half the mass is at 0, so the 99.95 % quantile is the 99.9 % quantile of |N(0,1)|.
    CHECK(obs.ranges()[0].max == doctest::Approx(3.2905).epsilon(0.03));
  }
  SUBCASE("a few huge outliers do not stretch the range") {
    std::vector<float> x = gaussian(100000, 0.0, 1.0, 16);
    for (std::size_t i = 0; i < 5; ++i) x[i * 1000] = (i % 2 ? -1.0f : 1.0f) * 1000.0f;
    histogram_observer<sym8> obs(99.9);
    obs.observe(make_array(x));
    // The bins are 1000/1024 wide or less here; the result is still within a bin of 3.29.
    CHECK(obs.ranges()[0].max < 5.0f);
    CHECK(obs.ranges()[0].max > 2.0f);
  }
}

TEST_CASE("histogram_observer: per-axis channels of different scales") {
  const double scales[] = {0.5, 1.0, 2.0, 4.0};
  std::vector<float> values;
  for (unsigned c = 0; c < 4; ++c) {
    const std::vector<float> ch = gaussian(20000, 0.0, scales[c], 30 + c);
    values.insert(values.end(), ch.begin(), ch.end());
  }
  histogram_observer<w8_axis0> obs(99.0);
  obs.observe(make_array(values, {4, 20000}));
  const std::vector<value_range> r = obs.ranges();
  REQUIRE(r.size() == 4);
  for (std::size_t c = 0; c < 4; ++c) {
    CAPTURE(c);
    // The 99th percentile of |N(0, s)| is 2.5758 s.
    CHECK(r[c].max == doctest::Approx(2.5758 * scales[c]).epsilon(0.03));
    CHECK(std::fabs(r[c].max - order_statistic(magnitudes(slice(values, c * 20000, (c + 1) * 20000)),
                                               0.99)) <= obs.channel_histogram(c).bin_width());
  }
  CHECK(obs.params().channels() == 4);
}

TEST_CASE("histogram_observer: per-axis on a middle axis equals per-tensor on each channel") {
  // [2, 3, 500] along axis 1: channel c is the union of x[0, c, :] and x[1, c, :].
  const std::vector<float> x = gaussian(3000, 0.5, 2.0, 40);
  histogram_observer<a8_axis1> per_axis(99.0);
  per_axis.observe(make_array(x, {2, 3, 500}));
  for (std::size_t c = 0; c < 3; ++c) {
    histogram_observer<act_u8> one(99.0);
    one.observe(make_array(concat(slice(x, c * 500, (c + 1) * 500), slice(x, (3 + c) * 500, (4 + c) * 500))));
    CHECK(per_axis.channel_histogram(c) == one.channel_histogram(0));
    CHECK(per_axis.ranges()[c] == one.ranges()[0]);
  }
}

TEST_CASE("histogram_observer: several observe() calls equal one call on the concatenation") {
  const std::vector<float> a = gaussian(20000, 0.0, 1.0, 41);
  const std::vector<float> b = gaussian(20000, 2.0, 5.0, 42);
  const std::vector<float> c = uniform(20000, -0.1, 0.1, 43);
  histogram_observer<act_u8> split, whole;
  split.observe(make_array(c));
  split.observe(make_array(a));
  split.observe(make_array(b));
  whole.observe(make_array(concat(concat(a, b), c)));
  CHECK(split.channel_histogram(0) == whole.channel_histogram(0));
  CHECK(split.ranges() == whole.ranges());
  CHECK(split.params() == whole.params());
}

TEST_CASE("histogram_observer: constant and all-zero data") {
  histogram_observer<act_u8> obs;
  obs.observe(make_array(std::vector<float>(100, 0.0f)));
  CHECK(obs.ranges()[0] == value_range{0.0f, 0.0f});
  CHECK(obs.params().scale[0] == 1.0f);
  histogram_observer<sym8> constant;
  constant.observe(make_array(std::vector<float>(100, -2.5f)));
  CHECK(constant.ranges()[0] == value_range{-2.5f, 2.5f});
}

TEST_CASE("histogram_observer: bad input") {
  CHECK(contains(message_of<value_error>([] { histogram_observer<act_u8> o(0.0); }), "(0, 100]"));
  CHECK_THROWS_AS(histogram_observer<act_u8>(100.5), value_error);
  CHECK_THROWS_AS(histogram_observer<act_u8>(std::nan("")), value_error);
  CHECK_THROWS_AS(histogram_observer<act_u8>(99.0, 1), value_error);

  histogram_observer<w8_axis0> obs;
  CHECK(contains(message_of<value_error>([&] { (void)obs.params(); }), "no data observed"));
  CHECK_THROWS_AS(obs.ranges(), value_error);
  obs.observe(make_array({-1, 1, -2, 2}, {2, 2}));
  const std::vector<value_range> before = obs.ranges();
  CHECK(contains(message_of<numeric_error>([&] {
                   obs.observe(make_array({0, 1, std::nanf(""), 3}, {2, 2}));
                 }),
                 "histogram_observer::observe: the tensor contains NaN at flat index 2"));
  CHECK_THROWS_AS(obs.observe(make_array({0, std::numeric_limits<float>::infinity(), 2, 3}, {2, 2})),
                  numeric_error);
  CHECK_THROWS_AS(obs.observe(array<float>(shape_t{2, 0})), value_error);
  CHECK_THROWS_AS(obs.observe(make_array({1, 2, 3}, {3, 1})), shape_error);
  CHECK_THROWS_AS(obs.channel_histogram(2), shape_error);
  histogram_observer<a8_axis1> axis1;
  CHECK_THROWS_AS(axis1.observe(make_array({1, 2})), shape_error);
  CHECK(obs.ranges() == before);
  obs.reset();
  CHECK_FALSE(obs.has_data());
}
