#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/layers/conv2d.hpp"

using namespace xquant;
using namespace nn_test;

namespace {
std::vector<std::string> names(nn::module& m) {
  std::vector<std::string> out;
  for (const auto& p : m.parameters()) out.push_back(p.name);
  return out;
}
}  // namespace

TEST_CASE("conv2d layer: PyTorch parameter names and shapes") {
  nn::conv2d<> with_bias({.in = 3, .out = 8, .kernel = 3, .padding = 1});
  CHECK(names(with_bias) == std::vector<std::string>{"weight", "bias"});
  CHECK(with_bias.weight().shape() == shape_t{8, 3, 3, 3});
  CHECK(with_bias.bias()->shape() == shape_t{8});
  CHECK(with_bias.weight().requires_grad());

  nn::conv2d<> depthwise({.in = 8, .out = 8, .kernel = 3, .stride = 2, .padding = 1, .groups = 8, .bias = false});
  CHECK(names(depthwise) == std::vector<std::string>{"weight"});
  CHECK(depthwise.bias() == nullptr);
  CHECK(depthwise.weight().shape() == shape_t{8, 1, 3, 3});
  CHECK(std::is_same_v<nn::conv2d<>::quant_type, no_quant>);
}

TEST_CASE("conv2d layer: PyTorch's default init, reproducible from the seed") {
  std::mt19937 rng(0);
  nn::conv2d<> conv({.in = 4, .out = 6, .kernel = 3}, rng);
  const double bound = 1.0 / std::sqrt(4.0 * 9.0);  // 1 / sqrt(fan_in)
  double max_w = 0, max_b = 0;
  for (float v : conv.weight().value()) max_w = std::max(max_w, double(std::abs(v)));
  for (float v : conv.bias()->value()) max_b = std::max(max_b, double(std::abs(v)));
  CHECK(max_w <= bound);
  CHECK(max_w > 0.8 * bound);  // 216 draws fill the range
  CHECK(max_b <= bound);
  CHECK(max_b > 0);

  std::mt19937 same(0), other(1);
  nn::conv2d<> a({.in = 4, .out = 6, .kernel = 3}, same), b({.in = 4, .out = 6, .kernel = 3}, other);
  CHECK(a.weight().value() == conv.weight().value());
  CHECK(a.bias()->value() == conv.bias()->value());
  CHECK(b.weight().value() != conv.weight().value());
}

TEST_CASE("conv2d layer forward is the functional op with its options") {
  std::mt19937 rng(1);
  nn::conv2d<> conv({.in = 2, .out = 3, .kernel = 3, .stride = 2, .padding = 1}, rng);
  const autograd::variable x(random_array<float>(shape_t{2, 2, 5, 7}, rng));
  const autograd::variable y = conv(x);
  CHECK(y.shape() == shape_t{2, 3, 3, 4});
  const autograd::variable expected =
      nn::functional::conv2d(x, conv.weight(), conv.bias(), {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1});
  CHECK(bit_identical(y.value(), expected.value()));
  autograd::backward(autograd::sum(y));
  CHECK(conv.weight().has_grad());
  CHECK(conv.bias()->has_grad());
}

TEST_CASE("conv2d layer rejects a bad configuration") {
  CHECK_THROWS_AS(nn::conv2d<>({.in = 4, .out = 6, .kernel = 3, .groups = 4}), shape_error);
  CHECK_THROWS_AS(nn::conv2d<>({.in = 0, .out = 6, .kernel = 3}), value_error);
  CHECK_THROWS_AS(nn::conv2d<>({.in = 4, .out = 6, .kernel = 0}), value_error);
}
