#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "xquant/quant/choose_params.hpp"
#include "xquant/quant/quantize.hpp"

using namespace xquant;

namespace {
using u8 = scheme<unsigned_bits<8>, asymmetric>;
using i8 = scheme<signed_bits<8>, asymmetric>;
using w8 = scheme<narrow_bits<8>, symmetric>;
using w8_axis0 = scheme<narrow_bits<8>, symmetric, per_axis<0>>;
using w4_pot = scheme<narrow_bits<4>, symmetric, power_of_two_scale>;
using u8_pot = scheme<unsigned_bits<8>, asymmetric, power_of_two_scale>;
}  // namespace

TEST_CASE("asymmetric: scale spans the range, real zero is exact") {
  const quant_params p = choose_params<u8>(-1.f, 2.f);
  CHECK(p.scale[0] == doctest::Approx(3.0 / 255));
  CHECK(p.zero_point[0] == 85);
  CHECK(quantize_value<u8>(0.f, p.scale[0], p.zero_point[0]) == 85);
  CHECK(dequantize_value(85, p.scale[0], p.zero_point[0]) == 0.f);

  // A range that excludes zero is widened to include it.
  const quant_params q = choose_params<u8>(2.f, 5.f);
  CHECK(q.zero_point[0] == 0);
  CHECK(q.scale[0] == doctest::Approx(5.0 / 255));
  const quant_params n = choose_params<i8>(-6.f, -3.f);
  CHECK(n.zero_point[0] == 127);
  CHECK(n.scale[0] == doctest::Approx(6.0 / 255));
}

TEST_CASE("symmetric narrow range: scale = amax / 127, zero point 0") {
  const quant_params p = choose_params<w8>(-0.5f, 2.54f);
  CHECK(p.scale[0] == doctest::Approx(2.54 / 127));
  CHECK(p.zero_point[0] == 0);
  CHECK(quantize_value<w8>(2.54f, p.scale[0], 0) == 127);
  CHECK(quantize_value<w8>(-2.54f, p.scale[0], 0) == -127);
}

TEST_CASE("every value inside the chosen range round-trips within scale / 2") {
  for (auto [lo, hi] : std::vector<std::pair<float, float>>{{-1.f, 1.f}, {-0.01f, 7.f}, {0.f, 1e-3f}, {-5e3f, 3.f}}) {
    const quant_params p = choose_params<u8>(lo, hi);
    for (int i = 0; i <= 1000; ++i) {
      const float x = lo + (hi - lo) * static_cast<float>(i) / 1000.f;
      const float back = dequantize_value(quantize_value<u8>(x, p.scale[0], p.zero_point[0]), p.scale[0],
                                          p.zero_point[0]);
      REQUIRE(std::abs(back - x) <= p.scale[0] * 0.5f * (1 + 1e-5f));
    }
  }
}

TEST_CASE("degenerate ranges: all-zero, all-equal, tiny") {
  const quant_params zero = choose_params<u8>(0.f, 0.f);
  CHECK(zero.scale[0] == 1.f);
  CHECK(zero.zero_point[0] == 0);
  const quant_params equal = choose_params<w8>(3.f, 3.f);  // widened to [0, 3]
  CHECK(equal.scale[0] == doctest::Approx(3.0 / 127));
  const quant_params tiny = choose_params<u8>(0.f, 1e-42f);
  CHECK(tiny.scale[0] == min_scale);
  const quant_params huge = choose_params<u8>(-std::numeric_limits<float>::max(), std::numeric_limits<float>::max());
  CHECK(std::isfinite(huge.scale[0]));
}

TEST_CASE("empty and non-finite ranges are errors") {
  CHECK_THROWS_WITH_AS(choose_params<u8>(1.f, -1.f), doctest::Contains("empty range"), value_error);
  CHECK_THROWS_AS(choose_params<u8>(std::nanf(""), 1.f), numeric_error);
  CHECK_THROWS_AS(choose_params<u8>(0.f, std::numeric_limits<float>::infinity()), numeric_error);
  CHECK_THROWS_AS(choose_params<w8_axis0>(std::vector<value_range>{{0.f, 1.f}, {}}), value_error);
  CHECK_THROWS_AS(choose_params<u8>(std::vector<value_range>{{0.f, 1.f}, {0.f, 2.f}}), shape_error);
  CHECK_THROWS_AS(choose_params<w8_axis0>(std::vector<value_range>{}), shape_error);
}

TEST_CASE("per axis: one scale per channel") {
  const std::vector<value_range> ranges = {{-1.f, 1.f}, {-0.1f, 0.2f}, {0.f, 0.f}};
  const quant_params p = choose_params<w8_axis0>(ranges);
  CHECK(p.axis == 0);
  REQUIRE(p.scale.size() == 3);
  CHECK(p.scale[0] == doctest::Approx(1.0 / 127));
  CHECK(p.scale[1] == doctest::Approx(0.2 / 127));
  CHECK(p.scale[2] == 1.f);
  validate<w8_axis0>(p);
}

TEST_CASE("power-of-two scales are rounded up so the range still fits") {
  const quant_params p = choose_params<w4_pot>(-1.f, 1.f);  // 1/7 -> 1/4
  CHECK(p.scale[0] == 0.25f);
  CHECK(is_power_of_two(p.scale[0]));
  const quant_params exact = choose_params<w4_pot>(-7.f, 7.f);  // exactly 1
  CHECK(exact.scale[0] == 1.f);
  const quant_params a = choose_params<u8_pot>(-1.f, 3.f);
  CHECK(is_power_of_two(a.scale[0]));
  CHECK(a.scale[0] >= 4.f / 255);
  // -1 and 3 are still representable without clipping.
  CHECK(dequantize_value(quantize_value<u8_pot>(3.f, a.scale[0], a.zero_point[0]), a.scale[0], a.zero_point[0]) ==
        doctest::Approx(3.f).epsilon(a.scale[0]));
  CHECK(dequantize_value(quantize_value<u8_pot>(-1.f, a.scale[0], a.zero_point[0]), a.scale[0],
                         a.zero_point[0]) == -1.f);
}
