#include <doctest/doctest.h>

#include <type_traits>

#include "xquant/quant/scheme.hpp"

using namespace xquant;

TEST_CASE("integer ranges have the documented bounds") {
  CHECK(signed_bits<8>::lo == -128);
  CHECK(signed_bits<8>::hi == 127);
  CHECK(unsigned_bits<8>::lo == 0);
  CHECK(unsigned_bits<8>::hi == 255);
  CHECK(narrow_bits<8>::lo == -127);
  CHECK(narrow_bits<8>::hi == 127);
  CHECK(signed_bits<2>::lo == -2);
  CHECK(signed_bits<2>::hi == 1);
  CHECK(unsigned_bits<16>::hi == 65535);
  CHECK(signed_bits<16>::lo == -32768);
  CHECK(narrow_bits<4>::bits == 4);
  CHECK(int_range<-3, 3>::bits == 3);
}

TEST_CASE("scheme tags are accepted in any order with defaults") {
  using a = scheme<narrow_bits<8>, symmetric, per_axis<0>>;
  using b = scheme<per_axis<0>, symmetric, narrow_bits<8>>;
  CHECK(a::qmin == b::qmin);
  CHECK(a::axis == 0);
  CHECK(b::is_per_axis);
  CHECK(a::is_symmetric);
  using d = scheme<unsigned_bits<8>>;
  CHECK_FALSE(d::is_symmetric);
  CHECK_FALSE(d::is_per_axis);
  CHECK(std::is_same_v<d::rounding, round_half_even>);
  CHECK(std::is_same_v<d::estimator, clipped_ste>);
  CHECK(std::is_same_v<d::scale_kind, float_scale>);
}

TEST_CASE("storage type and packing follow the bit width") {
  CHECK(std::is_same_v<scheme<signed_bits<8>>::value_type, std::int8_t>);
  CHECK(std::is_same_v<scheme<unsigned_bits<8>>::value_type, std::uint8_t>);
  CHECK(std::is_same_v<scheme<signed_bits<9>>::value_type, std::int16_t>);
  CHECK(std::is_same_v<scheme<unsigned_bits<16>>::value_type, std::uint16_t>);
  CHECK(scheme<signed_bits<2>>::values_per_byte == 4);
  CHECK(scheme<signed_bits<3>>::values_per_byte == 2);
  CHECK(scheme<unsigned_bits<4>>::values_per_byte == 2);
  CHECK(scheme<unsigned_bits<5>>::values_per_byte == 1);
  CHECK(scheme<signed_bits<12>>::container_bits == 16);
}

TEST_CASE("the reference bundles") {
  CHECK(w8a8::weight::qmin == -127);
  CHECK(w8a8::activation::qmax == 255);
  CHECK(w4a4::weight::qmax == 7);
  CHECK(w4a4::activation::qmax == 15);
  CHECK(w8a16::activation::qmax == 32767);
  // Clipping: min/max at 8 bits, MSE-optimal ranges at 4 bits unless the range is learned.
  CHECK(!w8a8::weight::mse_clipped);
  CHECK(!w8a8::activation::mse_clipped);
  CHECK(w4a8::weight::mse_clipped);
  CHECK(!w4a8::activation::mse_clipped);
  CHECK(w4a4::weight::mse_clipped);
  CHECK(w4a4::activation::mse_clipped);
  CHECK(!wa_bundle<4, 4, lsq>::weight::mse_clipped);
  CHECK(!wa_bundle<4, 4, lsq>::activation::mse_clipped);
}

TEST_CASE("clipping tags") {
  CHECK(!scheme<signed_bits<8>>::mse_clipped);
  CHECK(std::is_same_v<scheme<signed_bits<8>>::clipping, no_clipping>);
  CHECK(scheme<mse_clipping, unsigned_bits<4>>::mse_clipped);
  CHECK(scheme<unsigned_bits<4>, mse_clipping, ste>::mse_clipped);
}
