#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "xquant/quant/choose_params.hpp"
#include "xquant/quant/quantized_tensor.hpp"

using namespace xquant;

namespace {
array<float> random_tensor(shape_t shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  array<float> x(shape);
  for (auto& v : x) v = dist(rng);
  return x;
}
}  // namespace

TEST_CASE_TEMPLATE("quantized_tensor round-trips within scale/2 and stores compactly", S,
                   scheme<unsigned_bits<8>, asymmetric>, scheme<narrow_bits<8>, symmetric>,
                   scheme<signed_bits<4>, symmetric>, scheme<unsigned_bits<2>, asymmetric>,
                   scheme<signed_bits<3>, asymmetric>, scheme<signed_bits<16>, symmetric>,
                   scheme<unsigned_bits<12>, asymmetric>) {
  const array<float> x = random_tensor({3, 5, 7}, 11);  // 105 elements: odd for packing
  const auto [mn, mx] = std::minmax_element(x.begin(), x.end());
  const quant_params p = choose_params<S>(*mn, *mx);
  const auto q = quantized_tensor<S>::quantize(x, p);
  CHECK(q.shape() == shape_t{3, 5, 7});
  CHECK(q.storage_bytes() == packed_bytes(105, S::container_bits) * (S::container_bits == 16 ? 2 : 1));
  const array<float> back = q.dequantize();
  for (std::size_t i = 0; i < x.size(); ++i) {
    REQUIRE(std::abs(back.data()[i] - x.data()[i]) <= p.scale[0] * 0.5f * (1 + 1e-5f));
  }
  // values() agrees with the free quantize function.
  CHECK(q.values() == quantize<S>(x, p));
}

TEST_CASE("per-axis packed tensor") {
  using S = scheme<narrow_bits<4>, symmetric, per_axis<1>>;
  const array<float> x = random_tensor({2, 3, 5}, 5);
  std::vector<value_range> ranges(3);
  for (std::size_t o = 0; o < 2; ++o)
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t k = 0; k < 5; ++k) ranges[c].include(x(o, c, k));
  const quant_params p = choose_params<S>(ranges);
  const auto q = quantized_tensor<S>::quantize(x, p);
  CHECK(q.storage_bytes() == 15);
  const array<float> back = q.dequantize();
  for (std::size_t o = 0; o < 2; ++o)
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t k = 0; k < 5; ++k)
        REQUIRE(std::abs(back(o, c, k) - x(o, c, k)) <= p.scale[c] * 0.5f * (1 + 1e-5f));
}

TEST_CASE("zero-filled construction, from_values and set_value") {
  using S = scheme<unsigned_bits<4>, asymmetric>;
  quantized_tensor<S> t({3}, quant_params::tensor(0.5f, 3));
  CHECK(t.value(0) == 3);
  CHECK(t.value(2) == 3);
  CHECK(t.dequantize()(1) == 0.f);
  t.set_value(1, 15);
  CHECK(t.value(1) == 15);
  CHECK(t.value(0) == 3);
  CHECK(t.value(2) == 3);
  CHECK_THROWS_AS(t.set_value(1, 16), value_error);
  CHECK_THROWS_AS(t.set_value(1, -1), value_error);
  CHECK_THROWS_AS(t.value(3), shape_error);

  const std::vector<std::int32_t> v = {0, 7, 15};
  const auto u = quantized_tensor<S>::from_values({3}, v, quant_params::tensor(1.f, 0));
  CHECK(u.value(1) == 7);
  CHECK_THROWS_AS(quantized_tensor<S>::from_values({4}, v, quant_params::tensor(1.f, 0)), shape_error);
  const std::vector<std::int32_t> bad = {0, 16, 1};
  CHECK_THROWS_AS(quantized_tensor<S>::from_values({3}, bad, quant_params::tensor(1.f, 0)), value_error);
}

TEST_CASE("an empty quantized tensor is valid") {
  using S = scheme<signed_bits<4>, symmetric>;
  const array<float> x = array<float>::from_shape({0});
  const auto q = quantized_tensor<S>::quantize(x, quant_params::tensor(1.f, 0));
  CHECK(q.size() == 0);
  CHECK(q.storage_bytes() == 0);
  CHECK(q.dequantize().size() == 0);
}
