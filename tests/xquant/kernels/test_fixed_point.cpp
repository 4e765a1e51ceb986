#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "xquant/kernels/fixed_point.hpp"
#include "xquant/kernels/requant_args.hpp"

using namespace xquant;
using namespace xquant::kernels;

namespace {

// multiplier * 2^-shift as a double: exact, since multiplier has <= 31 bits.
double value_of(fixed_point_multiplier m) { return std::ldexp(static_cast<double>(m.multiplier), -m.shift); }

void check_exact(float scale) {
  const fixed_point_multiplier m = quantize_multiplier(scale);
  INFO("scale = ", scale, " multiplier = ", m.multiplier, " shift = ", m.shift);
  CHECK(m.multiplier >= (1 << 30));
  CHECK(m.shift >= 1);
  CHECK(m.shift <= 179);
  CHECK(value_of(m) == static_cast<double>(scale));
  // A float has 24 significant bits, so the low 7 bits of the multiplier are zero.
  CHECK((m.multiplier & 0x7F) == 0);
}

template <class E>
std::string message_of(auto&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

}  // namespace

TEST_CASE("quantize_multiplier represents a float32 scale exactly") {
  SUBCASE("hand-made") {
    CHECK(quantize_multiplier(0.5f) == fixed_point_multiplier{1 << 30, 31});
    CHECK(quantize_multiplier(1.0f) == fixed_point_multiplier{1 << 30, 30});
    CHECK(quantize_multiplier(0.75f) == fixed_point_multiplier{3 << 29, 31});
    CHECK(quantize_multiplier(std::ldexp(1.0f, -20)) == fixed_point_multiplier{1 << 30, 50});
    // The largest float below 1: 24 ones.
    CHECK(quantize_multiplier(std::nextafter(1.0f, 0.0f)) == fixed_point_multiplier{0x7FFFFF80, 31});
  }
  SUBCASE("edges of the domain") {
    check_exact(std::nextafter(max_requant_scale, 0.0f));  // shift 1
    CHECK(quantize_multiplier(std::nextafter(max_requant_scale, 0.0f)).shift == 1);
    check_exact(std::numeric_limits<float>::min());         // smallest normal
    check_exact(std::numeric_limits<float>::denorm_min());  // 2^-149, shift 179
    CHECK(quantize_multiplier(std::numeric_limits<float>::denorm_min()).shift == 179);
    check_exact(1e-6f);
    check_exact(1.0f);
  }
  SUBCASE("random scales, log-uniform over the whole domain and 1e-6..1") {
    std::mt19937 rng(20240601);
    std::uniform_real_distribution<float> wide(-149.0f, 29.99f);
    std::uniform_real_distribution<float> typical(std::log2(1e-6f), 0.0f);
    for (int i = 0; i < 2000; ++i) {
      check_exact(std::exp2(wide(rng)));
      check_exact(std::exp2(typical(rng)));
    }
    // Random bit patterns of positive finite floats below 2^30.
    std::uniform_int_distribution<std::uint32_t> bits(1, std::bit_cast<std::uint32_t>(max_requant_scale) - 1);
    for (int i = 0; i < 2000; ++i) check_exact(std::bit_cast<float>(bits(rng)));
  }
}

TEST_CASE("quantize_multiplier rejects scales outside (0, 2^30)") {
  const float bad[] = {0.0f,
                       -0.0f,
                       -1.0f,
                       -1e-6f,
                       std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity(),
                       max_requant_scale,
                       1e30f};
  for (float s : bad) {
    INFO("scale = ", s);
    CHECK_THROWS_AS(quantize_multiplier(s), value_error);
    CHECK_THROWS_AS(make_requant_args<std::int8_t>(s, 0), value_error);
  }
  CHECK(message_of<value_error>([] { quantize_multiplier(0.0f); }) ==
        "xquant: requantization scale 0 is not a finite number in (0, 2^30)");
  CHECK(message_of<value_error>([] { quantize_multiplier(std::nanf("")); }).find("nan") != std::string::npos);
}

TEST_CASE("per-channel multipliers name the bad channel") {
  const std::vector<float> good = {0.5f, 1e-3f, 2.0f};
  const fixed_point_multipliers m = quantize_multipliers(good);
  REQUIRE(m.multiplier.size() == 3);
  for (std::size_t c = 0; c < good.size(); ++c) {
    CHECK(value_of({m.multiplier[c], m.shift[c]}) == static_cast<double>(good[c]));
  }
  const std::vector<float> bad = {0.5f, 1e-3f, -2.0f};
  CHECK(message_of<value_error>([&] { quantize_multipliers(bad); }) ==
        "xquant: requantization scale[2] = -2 is not a finite number in (0, 2^30)");
  CHECK_THROWS_AS(make_requant_channel_params<std::uint8_t>(bad, 0), value_error);
}

TEST_CASE("requantization arguments: output parameters are checked where they are made") {
  const requant_args a = make_requant_args<std::uint8_t>(0.25f, 128);
  CHECK(a.scale == 0.25f);
  CHECK(a.multiplier == (1 << 30));
  CHECK(a.shift == 32);
  CHECK(a.zero_point == 128);
  CHECK(a.qmin == 0);
  CHECK(a.qmax == 255);

  CHECK_THROWS_AS(make_requant_args<std::int8_t>(0.5f, 128), value_error);           // zp outside int8
  CHECK_THROWS_AS(make_requant_args<std::uint8_t>(0.5f, -1), value_error);           // zp outside uint8
  CHECK_THROWS_AS(make_requant_args<std::int8_t>(0.5f, 0, 10, -10), value_error);    // qmin > qmax
  CHECK_THROWS_AS(make_requant_args<std::int8_t>(0.5f, 0, -129, 127), value_error);  // bound outside
  CHECK_THROWS_AS(make_requant_args<std::int16_t>(0.5f, 0, 0, 40000), value_error);
  CHECK_NOTHROW(make_requant_args<std::int16_t>(0.5f, -32768, -32768, 32767));
  CHECK_NOTHROW(make_requant_args<std::int8_t>(0.5f, 5, 5, 5));
  CHECK(message_of<value_error>([] { make_requant_args<std::int8_t>(0.5f, 300); }) ==
        "xquant: output zero point 300 is outside the output type's range [-128, 127]");

  const std::vector<float> scales = {0.5f, 0.125f};
  const requant_channel_params p = make_requant_channel_params<std::int8_t>(scales, -3, -100, 100);
  const requant_channel_args v = p.args();
  CHECK(p.channels() == 2);
  CHECK(v.scale[1] == 0.125f);
  CHECK(v.multiplier[1] == (1 << 30));
  CHECK(v.shift[1] == 33);
  CHECK(v.zero_point == -3);
  CHECK(v.qmin == -100);
  CHECK(v.qmax == 100);
  CHECK_THROWS_AS(make_requant_channel_params<std::int8_t>(scales, 0, 1, 0), value_error);
}
