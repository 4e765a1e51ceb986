#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "calib_test_util.hpp"
#include "xquant/calib/minmax_observer.hpp"
#include "xquant/calib/mse_observer.hpp"

using namespace xquant;
using namespace calib_test;

using sym8n = scheme<narrow_bits<8>, symmetric>;
using sym8 = scheme<signed_bits<8>, symmetric>;
using sym4n = scheme<narrow_bits<4>, symmetric>;
using act_u8 = scheme<unsigned_bits<8>, asymmetric>;
using act_u4 = scheme<unsigned_bits<4>, asymmetric>;
using w8_axis0 = scheme<narrow_bits<8>, symmetric, per_axis<0>>;
using pot4 = scheme<narrow_bits<4>, symmetric, power_of_two_scale>;

static_assert(observer<mse_observer<act_u8>>);
static_assert(observer<mse_observer<w8_axis0>>);

namespace {

// Brute force over both ends of an asymmetric range: a grid of (a, b) in
// [min, 0] x [0, max], then a finer grid around the best cell.
template <quant_scheme Scheme>
std::pair<value_range, double> brute_force_asymmetric(std::span<const float> x, int points = 30) {
  const auto [lo_it, hi_it] = std::minmax_element(x.begin(), x.end());
  const double lo = std::min(0.0f, *lo_it), hi = std::max(0.0f, *hi_it);
  value_range best_r{static_cast<float>(lo), static_cast<float>(hi)};
  double best = fake_quant_mse<Scheme>(x, best_r);
  const int points_a = lo < 0 ? points : 0;  // data >= 0: the lower end stays at 0
  const auto scan = [&](double a0, double a1, double b0, double b1) {
    for (int i = 0; i <= points_a; ++i)
      for (int k = 0; k <= points; ++k) {
        const double a = points_a == 0 ? 0.0 : std::clamp(a0 + (a1 - a0) * i / points_a, lo, 0.0);
        const double b = std::clamp(b0 + (b1 - b0) * k / points, 0.0, hi);
        if (a == b) continue;
        const value_range r{static_cast<float>(a), static_cast<float>(b)};
        const double e = fake_quant_mse<Scheme>(x, r);
        if (e < best) {
          best = e;
          best_r = r;
        }
      }
  };
  scan(lo, 0, 0, hi);
  const double da = -lo / points, db = hi / points;
  scan(best_r.min - da, best_r.min + da, best_r.max - db, best_r.max + db);
  return {best_r, best};
}

template <quant_scheme Scheme>
void check_symmetric_against_brute_force(const std::vector<float>& x, double threshold_tolerance) {
  mse_observer<Scheme> obs;
  obs.observe(make_array(x));
  const value_range r = obs.ranges()[0];
  const double mse = fake_quant_mse<Scheme>(x, r);
  const auto [best_t, best_mse] = brute_force_symmetric<Scheme>(x);
  MESSAGE("bits " << Scheme::bits << ": observer t = " << r.max << ", brute force t = " << best_t
                  << ", MSE ratio = " << mse / best_mse);
  CHECK(r.min == -r.max);
  CHECK(mse <= 1.01 * best_mse);
  CHECK(r.max == doctest::Approx(best_t).epsilon(threshold_tolerance));
}

}  // namespace

TEST_CASE("mse_observer: the error integrals are exact for uniform mass") {
  const detail::level_grid g{0.0, 10.0, 1.0};  // levels 0, 1, ..., 10
  // Whole periods: s^3 / 12 each.
  CHECK(detail::rounding_error_integral(g, 0.0, 10.0) == doctest::Approx(10.0 / 12.0));
  CHECK(detail::rounding_error_integral(g, 2.0, 5.0) == doctest::Approx(3.0 / 12.0));
  // Half a period around a level: 2 * integral_0^0.5 t^2 dt = 1/12.
  CHECK(detail::rounding_error_integral(g, 2.5, 3.5) == doctest::Approx(1.0 / 12.0));
  CHECK(detail::rounding_error_integral(g, 3.0, 3.25) == doctest::Approx(0.25 * 0.25 * 0.25 / 3.0));
  CHECK(detail::partial_period_error(1.0, 1.0) == doctest::Approx(1.0 / 12.0));
  CHECK(detail::partial_period_error(0.5, 1.0) == doctest::Approx(1.0 / 24.0));
  // A bin of uniform mass over [0, 10]: 1000 values, error 1/12 each.
  const histogram_bin inside{0.0, 10.0, 1000.0};
  CHECK(detail::expected_squared_error(std::span(&inside, 1), g) == doctest::Approx(1000.0 / 12.0));
  // Clipped mass over [12, 14] against the top level 10: mean of (x - 10)^2 = 28 / 3.
  const histogram_bin above{12.0, 14.0, 3.0};
  CHECK(detail::expected_squared_error(std::span(&above, 1), g) == doctest::Approx(3.0 * 28.0 / 3.0));
  const histogram_bin below{-2.0, -1.0, 1.0};
  CHECK(detail::expected_squared_error(std::span(&below, 1), g) == doctest::Approx(7.0 / 3.0));
  // A point mass (a zero-width bin): its own rounding error.
  const histogram_bin point{3.25, 3.25, 2.0};
  CHECK(detail::expected_squared_error(std::span(&point, 1), g) == doctest::Approx(2.0 * 0.0625));
  // A step of 0.3 that does not divide the bin: compare with fine numeric integration.
  const detail::level_grid h{-0.9, 1.2, 0.3};
  const histogram_bin b{-1.13, 1.71, 1.0};
  double numeric = 0;
  const int n = 2000000;
  for (int k = 0; k < n; ++k) numeric += detail::point_error(h, b.lo + (b.hi - b.lo) * (k + 0.5) / n);
  CHECK(detail::expected_squared_error(std::span(&b, 1), h) == doctest::Approx(numeric / n).epsilon(1e-5));
}

TEST_CASE("mse_observer: the predicted MSE matches the MSE on the raw samples") {
  const std::vector<float> x = gaussian(50000, 0.2, 1.0, 50);
  mse_observer<act_u8> obs;
  obs.observe(make_array(x));
  for (const value_range r : {value_range{-2, 2}, value_range{-4, 4.5f}, value_range{-1, 3}}) {
    CAPTURE(r.min);
    CAPTURE(r.max);
    CHECK(obs.expected_mse(0, r) == doctest::Approx(fake_quant_mse<act_u8>(x, r)).epsilon(0.02));
  }
}

TEST_CASE("mse_observer: symmetric choice on N(0,1) matches a brute-force search") {
  const std::vector<float> x = gaussian(50000, 0.0, 1.0, 51);
  // 8 bits: the MSE is flat near the optimum, so the threshold is only loosely determined.
  check_symmetric_against_brute_force<sym8n>(x, 0.05);
  check_symmetric_against_brute_force<sym8>(x, 0.05);
  // 4 bits: a sharp optimum (about 2.5 sigma, Banner et al. 2019).
  check_symmetric_against_brute_force<sym4n>(x, 0.03);
  mse_observer<sym4n> obs;
  obs.observe(make_array(x));
  CHECK(obs.ranges()[0].max == doctest::Approx(2.5).epsilon(0.08));
}

TEST_CASE("mse_observer: Laplace-like heavy tails clip harder than a Gaussian") {
  // Difference of two exponentials = Laplace(0, 1).
  std::vector<float> x = uniform(50000, 0.0, 1.0, 52);
  const std::vector<float> y = uniform(50000, 0.0, 1.0, 53);
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] =
        static_cast<float>(-std::log1p(-static_cast<double>(x[i])) + std::log1p(-static_cast<double>(y[i])));
  }
  check_symmetric_against_brute_force<sym4n>(x, 0.05);
}

TEST_CASE("mse_observer: asymmetric choice on ReLU outputs matches a brute-force search") {
  const std::vector<float> x = relu(gaussian(50000, 0.0, 1.0, 54));
  for (int bits : {8, 4}) {
    CAPTURE(bits);
    value_range r;
    double mse = 0;
    std::pair<value_range, double> best;
    if (bits == 8) {
      mse_observer<act_u8> obs;
      obs.observe(make_array(x));
      r = obs.ranges()[0];
      mse = fake_quant_mse<act_u8>(x, r);
      best = brute_force_asymmetric<act_u8>(x);
    } else {
      mse_observer<act_u4> obs;
      obs.observe(make_array(x));
      r = obs.ranges()[0];
      mse = fake_quant_mse<act_u4>(x, r);
      best = brute_force_asymmetric<act_u4>(x);
    }
    MESSAGE("ReLU, " << bits << " bits: observer [" << r.min << ", " << r.max << "], brute force ["
                     << best.first.min << ", " << best.first.max << "], MSE ratio " << mse / best.second);
    CHECK(r.min == 0.0f);
    CHECK(mse <= 1.01 * best.second);
    CHECK(r.max == doctest::Approx(best.first.max).epsilon(bits == 8 ? 0.05 : 0.03));
  }
}

TEST_CASE("mse_observer: asymmetric choice shrinks both ends on skewed data") {
  // N(1, 1): both ends are clipped, by different amounts.
  const std::vector<float> x = gaussian(20000, 1.0, 1.0, 55);
  mse_observer<act_u4> obs;
  obs.observe(make_array(x));
  const value_range r = obs.ranges()[0];
  const double mse = fake_quant_mse<act_u4>(x, r);
  const auto [best_r, best_mse] = brute_force_asymmetric<act_u4>(x);
  MESSAGE("N(1,1), 4 bits: observer [" << r.min << ", " << r.max << "], brute force [" << best_r.min << ", "
                                       << best_r.max << "], MSE ratio " << mse / best_mse);
  CHECK(mse <= 1.01 * best_mse);
  const value_range seen = obs.observed_range(0);
  CHECK(r.min > seen.min);
  CHECK(r.max < seen.max);
}

TEST_CASE("mse_observer: outliers are clipped, uniform data is not") {
  std::vector<float> x = gaussian(50000, 0.0, 1.0, 56);
  for (std::size_t i = 0; i < 10; ++i) x[i * 997] = (i % 2 ? -1.0f : 1.0f) * 10.0f;
  SUBCASE("4 bits: clipping 0.02 % outliers pays") {
    mse_observer<sym4n> obs;
    minmax_observer<sym4n> mm;
    obs.observe(make_array(x));
    mm.observe(make_array(x));
    const double mse = fake_quant_mse<sym4n>(x, obs.ranges()[0]);
    const double mse_minmax = fake_quant_mse<sym4n>(x, mm.ranges()[0]);
    MESSAGE("outliers, 4 bits: t = " << obs.ranges()[0].max << ", MSE " << mse << " vs min/max "
                                     << mse_minmax);
    CHECK(obs.ranges()[0].max < 5.0f);
    CHECK(mse < 0.25 * mse_minmax);
    CHECK(mse <= 1.01 * brute_force_symmetric<sym4n>(x, 400).second);
  }
  SUBCASE("8 bits: the outliers' clipping error would exceed the rounding error saved") {
    // Keeping the outliers (M = 10) costs (M / qmax)^2 / 12 = 5e-4 per value in rounding
    // error, clipping them at 4 sigma costs f (M - 4)^2 = 7e-3: the optimum keeps them.
    mse_observer<sym8n> obs;
    obs.observe(make_array(x));
    const double mse = fake_quant_mse<sym8n>(x, obs.ranges()[0]);
    CHECK(mse <= 1.01 * brute_force_symmetric<sym8n>(x, 400).second);
  }
  SUBCASE("uniform data keeps (almost) its full range") {
    const std::vector<float> u = uniform(50000, -1.0, 1.0, 57);
    mse_observer<sym8n> obs;
    obs.observe(make_array(u));
    CHECK(obs.ranges()[0].max > 0.98f);
  }
}

TEST_CASE("mse_observer: per-axis channels of different scales") {
  // 4 bits: a sharp optimum, so the thresholds scale with the channels.
  using w4_axis0 = scheme<narrow_bits<4>, symmetric, per_axis<0>>;
  const double scales[] = {0.5, 1.0, 2.0, 4.0};
  std::vector<float> values;
  for (unsigned c = 0; c < 4; ++c) {
    const std::vector<float> ch = gaussian(20000, 0.0, scales[c], 60 + c);
    values.insert(values.end(), ch.begin(), ch.end());
  }
  mse_observer<w4_axis0> obs;
  obs.observe(make_array(values, {4, 20000}));
  const std::vector<value_range> r = obs.ranges();
  REQUIRE(r.size() == 4);
  for (std::size_t c = 0; c < 4; ++c) {
    CAPTURE(c);
    const std::vector<float> ch = slice(values, c * 20000, (c + 1) * 20000);
    mse_observer<sym4n> one;
    one.observe(make_array(ch));
    CHECK(r[c] == one.ranges()[0]);  // the same computation as a per-tensor observer
    CHECK(r[c].max / scales[c] == doctest::Approx(r[1].max).epsilon(0.05));
  }
}

TEST_CASE("mse_observer: several observe() calls equal one call on the concatenation") {
  const std::vector<float> a = gaussian(20000, 0.0, 1.0, 70);
  const std::vector<float> b = gaussian(20000, 0.5, 2.0, 71);
  mse_observer<act_u8> split, whole;
  split.observe(make_array(a));
  split.observe(make_array(b));
  whole.observe(make_array(concat(b, a)));
  CHECK(split.ranges() == whole.ranges());
}

TEST_CASE("mse_observer: power-of-two scales and degenerate data") {
  const std::vector<float> x = gaussian(20000, 0.0, 1.0, 72);
  mse_observer<pot4> obs;
  obs.observe(make_array(x));
  const quant_params p = obs.params();
  CHECK(is_power_of_two(p.scale[0]));
  minmax_observer<pot4> mm;
  mm.observe(make_array(x));
  CHECK(fake_quant_mse<pot4>(x, obs.ranges()[0]) <= fake_quant_mse<pot4>(x, mm.ranges()[0]));

  mse_observer<act_u8> zeros;
  zeros.observe(make_array(std::vector<float>(10, 0.0f)));
  CHECK(zeros.ranges()[0] == value_range{0.0f, 0.0f});
  CHECK(zeros.params().scale[0] == 1.0f);
  mse_observer<sym8n> constant;
  constant.observe(make_array(std::vector<float>(10, 3.0f)));
  CHECK(constant.ranges()[0] == value_range{-3.0f, 3.0f});
  mse_observer<act_u8> positive;  // all data beyond 0: the range may not start below the data
  positive.observe(make_array(uniform(1000, 5.0, 6.0, 73)));
  CHECK(positive.ranges()[0].min >= 5.0f);
}

TEST_CASE("mse_observer: bad input") {
  CHECK_THROWS_AS(mse_observer<act_u8>(1), value_error);
  mse_observer<w8_axis0> obs;
  CHECK(contains(message_of<value_error>([&] { (void)obs.params(); }), "no data observed"));
  CHECK_THROWS_AS(obs.ranges(), value_error);
  obs.observe(make_array({-1, 1, -2, 2}, {2, 2}));
  const std::vector<value_range> before = obs.ranges();
  CHECK(contains(message_of<numeric_error>([&] {
                   obs.observe(make_array({0, 1, 2, std::nanf("")}, {2, 2}));
                 }),
                 "mse_observer::observe: the tensor contains NaN at flat index 3"));
  CHECK_THROWS_AS(obs.observe(make_array({0, std::numeric_limits<float>::infinity(), 2, 3}, {2, 2})),
                  numeric_error);
  CHECK_THROWS_AS(obs.observe(array<float>(shape_t{0})), value_error);
  CHECK_THROWS_AS(obs.observe(make_array({1, 2, 3}, {3, 1})), shape_error);
  CHECK_THROWS_AS(obs.observe(array<float>(1.0f)), shape_error);
  CHECK(obs.ranges() == before);
  obs.reset();
  CHECK_FALSE(obs.has_data());
}
