#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/moving_average_observer.hpp"
#include "xquant/calib/mse_observer.hpp"

using namespace xquant;
using namespace calib_test;

using act_u8 = scheme<unsigned_bits<8>, asymmetric>;
using w8_axis0 = scheme<narrow_bits<8>, symmetric, per_axis<0>>;

static_assert(observer<moving_average_minmax_observer<act_u8>>);
static_assert(observer<moving_average_minmax_observer<w8_axis0>>);

TEST_CASE("moving_average_minmax_observer: first batch sets the range, then the PyTorch update") {
  const float c = 0.25f;
  moving_average_minmax_observer<act_u8> obs(c);
  CHECK(obs.averaging_constant() == c);
  obs.observe(make_array({-1.0f, 2.0f}));
  CHECK(obs.ranges()[0] == value_range{-1.0f, 2.0f});
  // The same float expression, in the same order, as PyTorch's
  // min_val + averaging_constant * (min_now - min_val).
  float lo = -1.0f, hi = 2.0f;
  const std::vector<std::vector<float>> batches = {
      gaussian(100, 0, 1, 1), gaussian(100, 1, 3, 2), {0.5f}, {-7.0f, 9.0f}};
  for (const auto& batch : batches) {
    obs.observe(make_array(batch));
    const auto [bmin, bmax] = std::minmax_element(batch.begin(), batch.end());
    lo = lo + c * (*bmin - lo);
    hi = hi + c * (*bmax - hi);
    CHECK(obs.ranges()[0] == value_range{lo, hi});
  }
  CHECK(obs.params() == choose_params<act_u8>(lo, hi));
}

TEST_CASE("moving_average_minmax_observer: default constant 0.01 and c = 1 tracks the last batch") {
  moving_average_minmax_observer<act_u8> slow;
  CHECK(slow.averaging_constant() == 0.01f);
  slow.observe(make_array({0.0f, 1.0f}));
  slow.observe(make_array({0.0f, 101.0f}));
  CHECK(slow.ranges()[0].max == doctest::Approx(2.0));  // 1 + 0.01 * 100

  moving_average_minmax_observer<act_u8> last(1.0f);
  last.observe(make_array({-5.0f, 5.0f}));
  last.observe(make_array({0.5f, 1.5f}));
  CHECK(last.ranges()[0] == value_range{0.5f, 1.5f});
}

TEST_CASE("moving_average_minmax_observer: a single outlier batch moves the range by c only") {
  moving_average_minmax_observer<act_u8> obs(0.01f);
  for (unsigned b = 0; b < 20; ++b) obs.observe(make_array(uniform(1000, -1.0, 1.0, b)));
  const float before = obs.ranges()[0].max;
  obs.observe(make_array({0.0f, 100.0f}));
  CHECK(obs.ranges()[0].max == doctest::Approx(before + 0.01 * (100.0 - before)));
}

TEST_CASE("moving_average_minmax_observer: per-axis averages each channel") {
  const float c = 0.5f;
  moving_average_minmax_observer<w8_axis0> obs(c);
  obs.observe(make_array({-1, 1, -10, 10}, {2, 2}));
  obs.observe(make_array({-3, 3, 0, 2}, {2, 2}));
  const std::vector<value_range> r = obs.ranges();
  REQUIRE(r.size() == 2);
  CHECK(r[0] == value_range{-1.0f + c * (-3.0f + 1.0f), 1.0f + c * (3.0f - 1.0f)});
  CHECK(r[1] == value_range{-10.0f + c * (0.0f + 10.0f), 10.0f + c * (2.0f - 10.0f)});
  CHECK(obs.params().channels() == 2);
}

TEST_CASE("moving_average_minmax_observer: freeze stops updates, unfreeze resumes") {
  moving_average_minmax_observer<act_u8> obs(0.5f);
  obs.observe(make_array({0.0f, 1.0f}));
  obs.freeze();
  CHECK(obs.frozen());
  obs.observe(make_array({0.0f, 100.0f}));
  CHECK(obs.ranges()[0] == value_range{0.0f, 1.0f});
  // A frozen observer does not look at its input at all.
  CHECK_NOTHROW(obs.observe(make_array({std::numeric_limits<float>::quiet_NaN()})));
  CHECK_NOTHROW(obs.observe(array<float>(shape_t{0})));
  obs.unfreeze();
  CHECK_FALSE(obs.frozen());
  obs.observe(make_array({0.0f, 3.0f}));
  CHECK(obs.ranges()[0] == value_range{0.0f, 2.0f});
  // reset() forgets the statistics but keeps the mode.
  obs.freeze();
  obs.reset();
  CHECK(obs.frozen());
  CHECK_FALSE(obs.has_data());
}

TEST_CASE("moving_average_minmax_observer: bad input") {
  SUBCASE("averaging constant outside (0, 1]") {
    for (const float c : {0.0f, -0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN()}) {
      CAPTURE(c);
      CHECK(
          contains(message_of<value_error>([&] { moving_average_minmax_observer<act_u8> o(c); }), "(0, 1]"));
    }
  }
  moving_average_minmax_observer<w8_axis0> obs;
  CHECK(contains(message_of<value_error>([&] { (void)obs.params(); }), "no data observed"));
  obs.observe(make_array({-1, 1, -2, 2}, {2, 2}));
  const std::vector<value_range> before = obs.ranges();
  CHECK(contains(message_of<numeric_error>([&] {
                   obs.observe(make_array({0, 1, 2, -std::numeric_limits<float>::infinity()}, {2, 2}));
                 }),
                 "-Inf at flat index 3"));
  CHECK(contains(message_of<numeric_error>([&] {
                   obs.observe(make_array({std::nanf(""), 1, 2, 3}, {2, 2}));
                 }),
                 "NaN at flat index 0"));
  CHECK_THROWS_AS(obs.observe(array<float>(shape_t{0, 2})), value_error);
  CHECK_THROWS_AS(obs.observe(make_array({1, 2, 3}, {3, 1})), shape_error);
  CHECK_THROWS_AS(obs.observe(array<float>(0.5f)), shape_error);  // rank 0 has no axis 0
  CHECK(obs.ranges() == before);
}

using act_u4_mse = scheme<unsigned_bits<4>, asymmetric, mse_clipping>;
static_assert(observer<moving_average_mse_observer<act_u4_mse>>);
static_assert(std::is_same_v<default_activation_observer<act_u4_mse>, moving_average_mse_observer<act_u4_mse>>);
static_assert(std::is_same_v<default_activation_observer<act_u8>, moving_average_minmax_observer<act_u8>>);

TEST_CASE("moving_average_mse_observer: averages each batch's MSE-optimal range") {
  const float c = 0.25f;
  moving_average_mse_observer<act_u4_mse> obs(c);
  const auto batch_range = [](const std::vector<float>& b) {
    mse_observer<act_u4_mse> o(detail::batch_mse::bins);
    o.observe(make_array(b));
    return o.ranges()[0];
  };
  // ReLU outputs with a long tail: the first batch sets a clipped range.
  const std::vector<float> first = relu(gaussian(4000, 0, 1, 5));
  obs.observe(make_array(first));
  const value_range r0 = batch_range(first);
  CHECK(obs.ranges()[0] == r0);
  CHECK(r0.min == 0.0f);
  CHECK(r0.max < *std::max_element(first.begin(), first.end()));
  const std::vector<float> second = relu(gaussian(4000, 0, 2, 6));
  obs.observe(make_array(second));
  const value_range r1 = batch_range(second);
  CHECK(obs.ranges()[0].max == r0.max + c * (r1.max - r0.max));
  obs.freeze();
  obs.observe(make_array({100.0f}));
  CHECK(obs.ranges()[0].max == r0.max + c * (r1.max - r0.max));
  CHECK(contains(message_of<numeric_error>([&] {
                   obs.unfreeze();
                   obs.observe(make_array({1.0f, std::numeric_limits<float>::infinity()}));
                 }),
                 "moving_average_observer"));
}
