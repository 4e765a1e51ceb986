// The contract every observer keeps, checked for all five on the same data, per tensor
// and per axis.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/observers.hpp"

using namespace xquant;
using namespace calib_test;

namespace {

using tensor_u8 = scheme<unsigned_bits<8>, asymmetric>;
using axis1_s8 = scheme<narrow_bits<8>, symmetric, per_axis<1>>;

// [50, 4, 10]: along axis 1, channel c ~ N(0.3 c, c + 1).
const shape_t data_shape{50, 4, 10};

std::vector<float> channel_data() {
  std::vector<float> x = gaussian(2000, 0.0, 1.0, 123);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = static_cast<float>((i / 10) % 4);
    x[i] = x[i] * (c + 1.0f) + 0.3f * c;
  }
  return x;
}

// Per-channel [min, max] along `axis` (-1: the whole tensor).
std::vector<value_range> true_ranges(const std::vector<float>& x, int axis) {
  std::vector<value_range> r(axis < 0 ? 1 : 4);
  for (std::size_t i = 0; i < x.size(); ++i) r[axis < 0 ? 0 : (i / 10) % 4].include(x[i]);
  return r;
}

}  // namespace

TEST_CASE_TEMPLATE("observers: the common contract", O, minmax_observer<tensor_u8>,
                   moving_average_minmax_observer<tensor_u8>, histogram_observer<tensor_u8>,
                   mse_observer<tensor_u8>, kl_observer<tensor_u8>, minmax_observer<axis1_s8>,
                   moving_average_minmax_observer<axis1_s8>, histogram_observer<axis1_s8>,
                   mse_observer<axis1_s8>, kl_observer<axis1_s8>) {
  using Scheme = typename O::scheme_type;
  static_assert(observer<O>);
  constexpr int axis = Scheme::is_per_axis ? Scheme::axis : -1;
  O obs;

  // Nothing observed: no ranges, no params.
  CHECK_FALSE(obs.has_data());
  CHECK_THROWS_AS(obs.ranges(), value_error);
  CHECK_THROWS_AS(obs.params(), value_error);

  const std::vector<float> x = channel_data();
  obs.observe(make_array(slice(x, 0, 1000), {25, 4, 10}));
  obs.observe(make_array(slice(x, 1000, 2000), {25, 4, 10}));
  CHECK(obs.has_data());

  // One range per channel, inside the data (symmetric: inside [-max|x|, max|x|]).
  const std::vector<value_range> r = obs.ranges();
  const std::vector<value_range> truth = true_ranges(x, axis);
  REQUIRE(r.size() == truth.size());
  for (std::size_t c = 0; c < r.size(); ++c) {
    CAPTURE(c);
    CHECK_FALSE(r[c].empty());
    const float amax = std::max(-truth[c].min, truth[c].max);
    const value_range allowed = Scheme::is_symmetric ? value_range{-amax, amax} : truth[c];
    CHECK(r[c].min >= allowed.min);
    CHECK(r[c].max <= allowed.max);
    CHECK(r[c].max > 0.5f * allowed.max);  // clipping, not collapsing
  }

  // params() is choose_params of the ranges, valid for the scheme and the shape.
  const quant_params p = obs.params();
  CHECK(p == choose_params<Scheme>(std::span<const value_range>(r)));
  CHECK_NOTHROW(validate<Scheme>(p));
  CHECK_NOTHROW(validate_shape(p, data_shape));
  const array<float> back = fake_quantize<Scheme>(make_array(x, data_shape), p);
  CHECK(std::all_of(back.begin(), back.end(), [](float v) { return std::isfinite(v); }));

  // Bad input is rejected and changes nothing.
  std::vector<float> bad = slice(x, 0, 400);
  bad[123] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(obs.observe(make_array(bad, {10, 4, 10})), numeric_error);
  bad[123] = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(obs.observe(make_array(bad, {10, 4, 10})), numeric_error);
  CHECK_THROWS_AS(obs.observe(array<float>(shape_t{0, 4, 10})), value_error);
  if constexpr (Scheme::is_per_axis) {
    CHECK_THROWS_AS(obs.observe(make_array(slice(x, 0, 500), {10, 5, 10})), shape_error);
    CHECK_THROWS_AS(obs.observe(make_array(slice(x, 0, 10), {10})), shape_error);
  }
  CHECK(obs.ranges() == r);

  obs.reset();
  CHECK_FALSE(obs.has_data());
  CHECK_THROWS_AS(obs.params(), value_error);
}
