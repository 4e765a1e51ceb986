#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "xquant/quant/quantize.hpp"

using namespace xquant;

namespace {

using u8 = scheme<unsigned_bits<8>, asymmetric>;
using i8 = scheme<signed_bits<8>, asymmetric>;
using i8_axis1 = scheme<signed_bits<8>, asymmetric, per_axis<1>>;
using u8_axis1 = scheme<unsigned_bits<8>, asymmetric, per_axis<1>>;
using i8_away = scheme<signed_bits<8>, asymmetric, round_half_away>;

// float64 reference of ONNX QuantizeLinear. ONNX divides in float32; a float32 quotient
// equals the double quotient rounded to float (53 >= 2*24 + 2 bits, so the double
// rounding is innocuous), after which rounding and clamping are exact in double.
template <class Scheme>
long reference_quantize(float x, float scale, int zero_point) {
  const double quotient = static_cast<double>(static_cast<float>(static_cast<double>(x) / scale));
  const double r = std::is_same_v<typename Scheme::rounding, round_half_even> ? std::nearbyint(quotient)
                                                                             : std::round(quotient);
  const double q = r + zero_point;
  return static_cast<long>(std::fmin(std::fmax(q, Scheme::qmin), Scheme::qmax));
}

}  // namespace

TEST_CASE("QuantizeLinear uint8: the ONNX specification example") {
  const array<float> x = {0.f, 2.f, 3.f, 1000.f, -254.f, -1000.f};
  const auto q = quantize<u8>(x, quant_params::tensor(2.f, 128));
  const array<std::uint8_t> expected = {128, 129, 130, 255, 1, 0};
  CHECK(q == expected);
}

TEST_CASE("QuantizeLinear int8: saturation and ties to even") {
  const array<float> x = {0.f, 2.f, 3.f, 1000.f, -254.f, -1000.f};
  const array<std::int8_t> expected = {-1, 0, 1, 127, -128, -128};
  CHECK(quantize<i8>(x, quant_params::tensor(2.f, -1)) == expected);

  const array<float> ties = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, 127.5f};
  const array<std::int8_t> even = {0, 2, 2, 0, -2, -2, 126, 127};
  CHECK(quantize<i8>(ties, quant_params::tensor(1.f, 0)) == even);
  const array<std::int8_t> away = {1, 2, 3, -1, -2, -3, 127, 127};
  CHECK(quantize<i8_away>(ties, quant_params::tensor(1.f, 0)) == away);
}

TEST_CASE("QuantizeLinear per axis: the ONNX axis=1 example") {
  const array<float> x = {{{{-162, 10}, {-100, 232}, {-20, -50}},
                           {{-76, 0}, {0, 252}, {32, -44}},
                           {{245, -485}, {-960, -270}, {-375, -470}}}};
  const quant_params p = quant_params::along(1, {2.f, 4.f, 5.f}, {84, 24, 196});
  const array<std::uint8_t> expected = {{{{3, 89}, {34, 200}, {74, 59}},
                                         {{5, 24}, {24, 87}, {32, 13}},
                                         {{245, 99}, {4, 142}, {121, 102}}}};
  CHECK(quantize<u8_axis1>(x, p) == expected);
}

TEST_CASE("DequantizeLinear: (q - zero_point) * scale, per tensor and per axis") {
  const array<std::uint8_t> q = {0, 3, 128, 255};
  const array<float> expected = {-256.f, -250.f, 0.f, 254.f};
  CHECK(dequantize<u8>(q, quant_params::tensor(2.f, 128)) == expected);

  const array<std::int8_t> qa = {{-128, 0, 127}, {-128, 0, 127}};
  const quant_params p = quant_params::along(1, {0.5f, 1.f, 2.f}, {0, -1, 1});
  const array<float> ea = {{-64.f, 1.f, 252.f}, {-64.f, 1.f, 252.f}};
  CHECK(dequantize<i8_axis1>(qa, p) == ea);
}

TEST_CASE("10^6 random values agree with the float64 reference, bit for bit") {
  std::mt19937 rng(20261122);
  std::uniform_real_distribution<float> value(-300.f, 300.f);
  std::uniform_real_distribution<float> log_scale(-6.f, 1.f);
  std::uniform_int_distribution<int> zp_u8(0, 255), zp_i8(-128, 127), half(-400, 400);
  long mismatches = 0, double_path_differences = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    const float scale = std::pow(10.f, log_scale(rng));
    // A quarter of the values sit exactly on rounding ties, the hard case.
    const float x = (i % 4 == 0) ? (static_cast<float>(half(rng)) + 0.5f) * scale : value(rng);
    if (i % 2 == 0) {
      const int z = zp_u8(rng);
      mismatches += quantize_value<u8>(x, scale, z) != reference_quantize<u8>(x, scale, z);
    } else {
      const int z = zp_i8(rng);
      const long got = quantize_value<i8>(x, scale, z);
      mismatches += got != reference_quantize<i8>(x, scale, z);
      // Versus pure float64 math (no float32 division) results may differ only at a tie
      // that the float32 quotient rounds onto or off; never by more than one.
      const double exact = std::fmin(std::fmax(std::nearbyint(static_cast<double>(x) / scale) + z, -128), 127);
      CHECK(std::abs(static_cast<double>(got) - exact) <= 1.0);
      double_path_differences += static_cast<double>(got) != exact;
    }
  }
  CHECK(mismatches == 0);
  MESSAGE("float32-division vs float64-division tie flips: " << double_path_differences << " of 500000");
}

TEST_CASE("dequantize equals the float64 reference bit for bit") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> log_scale(-6.f, 1.f);
  std::uniform_int_distribution<int> q(-128, 127), zp(-128, 127);
  for (int i = 0; i < 100'000; ++i) {
    const float s = std::pow(10.f, log_scale(rng));
    const int qi = q(rng), z = zp(rng);
    const auto expected = static_cast<float>(static_cast<double>(qi - z) * static_cast<double>(s));
    REQUIRE(dequantize_value(qi, s, z) == expected);
  }
}

TEST_CASE("Inf saturates, NaN is rejected with its index") {
  const float inf = std::numeric_limits<float>::infinity();
  const array<float> x = {inf, -inf, std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()};
  const array<std::uint8_t> expected = {255, 0, 255, 0};
  CHECK(quantize<u8>(x, quant_params::tensor(0.1f, 10)) == expected);

  const array<float> bad = {1.f, 2.f, std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_WITH_AS(quantize<u8>(bad, quant_params::tensor(1.f, 0)),
                       doctest::Contains("NaN at flat index 2"), numeric_error);
}

TEST_CASE("bad parameters are rejected before any data is touched") {
  const array<float> x = {1.f, 2.f};
  CHECK_THROWS_AS(quantize<u8>(x, quant_params::tensor(0.f, 0)), value_error);
  CHECK_THROWS_AS(quantize<u8>(x, quant_params::tensor(-1.f, 0)), value_error);
  CHECK_THROWS_AS(quantize<u8>(x, quant_params::tensor(std::nanf(""), 0)), value_error);
  CHECK_THROWS_AS(quantize<u8>(x, quant_params::tensor(1e-40f, 0)), value_error);  // subnormal
  CHECK_THROWS_WITH_AS(quantize<u8>(x, quant_params::tensor(1.f, 256)),
                       doctest::Contains("zero_point[0] = 256 is outside [0, 255]"), value_error);
  using sym = scheme<signed_bits<8>, symmetric>;
  CHECK_THROWS_WITH_AS(quantize<sym>(x, quant_params::tensor(1.f, 3)), doctest::Contains("zero_point 0"),
                       value_error);
  using pot = scheme<signed_bits<8>, symmetric, power_of_two_scale>;
  CHECK_THROWS_AS(quantize<pot>(x, quant_params::tensor(0.3f, 0)), value_error);
  CHECK(quantize<pot>(x, quant_params::tensor(0.25f, 0))(1) == 8);
}

TEST_CASE("per-axis shape and axis mismatches are shape errors") {
  const array<float> x = array<float>::from_shape({2, 3});
  // axis 1 has 3 channels, params give 2.
  CHECK_THROWS_AS(quantize<i8_axis1>(x, quant_params::along(1, {1.f, 1.f}, {0, 0})), shape_error);
  // the scheme is per_axis<1>, params say axis 0.
  CHECK_THROWS_AS(quantize<i8_axis1>(x, quant_params::along(0, {1.f, 1.f}, {0, 0})), value_error);
  // per_axis<1> on a 1-D tensor.
  const array<float> v = {1.f, 2.f};
  CHECK_THROWS_AS(quantize<i8_axis1>(v, quant_params::along(1, {1.f}, {0})), shape_error);
  // per-tensor scheme given per-axis params.
  CHECK_THROWS_AS(quantize<i8>(x, quant_params::along(1, {1.f, 1.f, 1.f}, {0, 0, 0})), value_error);
}

TEST_CASE("empty tensors quantize to empty tensors") {
  const array<float> x = array<float>::from_shape({0, 3});
  CHECK(quantize<u8>(x, quant_params::tensor(1.f, 0)).size() == 0);
  CHECK(quantize<u8_axis1>(x, quant_params::along(1, {1.f, 1.f, 1.f}, {0, 0, 0})).size() == 0);
}
