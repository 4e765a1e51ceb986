#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/exact_mse_range.hpp"

using namespace xquant;
using namespace calib_test;

using w4 = scheme<narrow_bits<4>, symmetric>;
using w4_axis0 = scheme<narrow_bits<4>, symmetric, per_axis<0>>;
using w8 = scheme<narrow_bits<8>, symmetric>;
using a4 = scheme<unsigned_bits<4>, asymmetric>;

namespace {

/// The exact MSE of the 41 candidate ranges r * [min, max], r = 1 - k/64: the search's
/// own candidates, all of them, with the library's quantize (float64 sum).
template <quant_scheme S>
double best_candidate_mse(const std::vector<float>& x) {
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  double best = std::numeric_limits<double>::infinity();
  for (int k = 0; k <= 40; ++k) {
    const double r = 1.0 - k / 64.0;
    best = std::min(best, fake_quant_mse<S>(x, {static_cast<float>(*lo * r), static_cast<float>(*hi * r)}));
  }
  return best;
}

}  // namespace

TEST_CASE("exact_mse_ranges: 4-bit Gaussian weights are clipped, close to the best threshold") {
  const std::vector<float> x = gaussian(2000, 0, 1, 7);
  const std::vector<value_range> r = exact_mse_ranges<w4>(make_array(x));
  REQUIRE(r.size() == 1);
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  const double amax = std::max(-*lo, *hi);
  CHECK(r[0].max < 0.8 * amax);  // 4 bits: the optimum clips well inside the extremes
  const double chosen = fake_quant_mse<w4>(x, r[0]);
  CHECK(chosen < 0.7 * fake_quant_mse<w4>(x, {*lo, *hi}));
  // Within 2 % of the best of all candidates, and of a fine brute-force threshold search.
  CHECK(chosen <= 1.02 * best_candidate_mse<w4>(x));
  CHECK(chosen <= 1.05 * brute_force_symmetric<w4>(x).second);
}

TEST_CASE("exact_mse_ranges: an outlier is clipped, data without tails keeps its range") {
  // 4 bits: the min/max step of an outlier at 12 costs the 2000 Gaussian values more than
  // clipping the one outlier does.
  std::vector<float> x = gaussian(2000, 0, 1, 3);
  x.push_back(12.0f);
  CHECK(exact_mse_ranges<w4>(make_array(x))[0].max < 12.0f * 0.75f);
  // 8 bits: the step is fine enough that clipping a far outlier would cost more than it
  // saves (MSE, not a percentile rule): at most a sliver of the range goes.
  x.back() = 40.0f;
  CHECK(exact_mse_ranges<w8>(make_array(x))[0].max >= 40.0f * 0.95f);
  // Uniform data on exactly the 15 levels of a 4-bit symmetric grid: min/max is exact.
  std::vector<float> levels;
  for (int i = -7; i <= 7; ++i) levels.push_back(0.5f * static_cast<float>(i));
  CHECK(exact_mse_ranges<w4>(make_array(levels))[0] == value_range{-3.5f, 3.5f});
  // All values equal: nothing to clip (ties go to the wider range).
  CHECK(exact_mse_ranges<w4>(make_array({0.0f, 0.0f, 0.0f}))[0] == value_range{0.0f, 0.0f});
  CHECK(exact_mse_ranges<a4>(make_array({2.0f, 2.0f}))[0] == value_range{2.0f, 2.0f});
}

TEST_CASE("exact_mse_ranges: per axis, each channel on its own values") {
  // [3, 200]: channel 0 Gaussian, channel 1 the same scaled by 10 plus an outlier,
  // channel 2 on a 4-bit grid.
  std::vector<float> c0 = gaussian(200, 0, 1, 11);
  std::vector<float> c1 = c0;
  for (float& v : c1) v *= 10.0f;
  c1[5] = 300.0f;
  std::vector<float> c2;
  for (int i = 0; i < 200; ++i) c2.push_back(static_cast<float>(i % 15 - 7));
  const array<float> w = make_array(concat(concat(c0, c1), c2), {3, 200});
  const std::vector<value_range> r = exact_mse_ranges<w4_axis0>(w);
  REQUIRE(r.size() == 3);
  CHECK(r[0] == exact_mse_ranges<w4>(make_array(c0))[0]);
  CHECK(r[1] == exact_mse_ranges<w4>(make_array(c1))[0]);
  CHECK(r[1].max < 300.0f);
  CHECK(r[2] == value_range{-7.0f, 7.0f});
}

TEST_CASE("exact_mse_ranges: bad input is an error") {
  CHECK(contains(message_of<value_error>([] { (void)exact_mse_ranges<w4>(array<float>(shape_t{0})); }), "empty"));
  CHECK(contains(message_of<numeric_error>([] {
                   (void)exact_mse_ranges<w4>(make_array({1.0f, std::numeric_limits<float>::quiet_NaN()}));
                 }),
                 "NaN"));
  CHECK(contains(message_of<shape_error>([] { (void)exact_mse_ranges<w4_axis0>(array<float>(shape_t{}, 1.0f)); }),
                 "per_axis"));
}
