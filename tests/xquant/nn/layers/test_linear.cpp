#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "../nn_test_util.hpp"
#include "xquant/nn/layers/linear.hpp"

using namespace xquant;
using namespace nn_test;

TEST_CASE("linear layer: names, shapes, default init and forward") {
  std::mt19937 rng(0);
  nn::linear<> fc({.in = 16, .out = 4}, rng);
  const auto params = fc.parameters();
  REQUIRE(params.size() == 2);
  CHECK(params[0].name == "weight");
  CHECK(params[1].name == "bias");
  CHECK(fc.weight().shape() == shape_t{4, 16});
  for (float v : fc.weight().value()) CHECK(std::abs(v) <= 0.25f);  // 1 / sqrt(16)
  for (float v : fc.bias()->value()) CHECK(std::abs(v) <= 0.25f);

  const autograd::variable x(random_array<float>(shape_t{3, 16}, rng));
  const autograd::variable y = fc(x);
  CHECK(y.shape() == shape_t{3, 4});
  CHECK(bit_identical(y.value(), nn::functional::linear(x, fc.weight(), fc.bias()).value()));

  nn::linear<> no_bias({.in = 16, .out = 4, .bias = false});
  CHECK(no_bias.parameters().size() == 1);
  CHECK(no_bias.bias() == nullptr);
  CHECK_THROWS_AS(nn::linear<>({.in = 0, .out = 4}), value_error);
  CHECK_THROWS_AS(fc(autograd::variable(array<float>(shape_t{3, 15}, 0.f))), shape_error);
}
