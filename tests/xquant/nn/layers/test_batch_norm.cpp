#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/layers/batch_norm.hpp"

using namespace xquant;
using namespace nn_test;

TEST_CASE("batch_norm2d: PyTorch names, parameters and buffers") {
  nn::batch_norm2d bn(3);
  const auto params = bn.parameters();
  const auto buffers = bn.buffers();
  REQUIRE(params.size() == 2);
  REQUIRE(buffers.size() == 2);
  CHECK(params[0].name == "weight");
  CHECK(params[1].name == "bias");
  CHECK(buffers[0].name == "running_mean");
  CHECK(buffers[1].name == "running_var");
  CHECK(bn.weight().value() == array<float>{1.f, 1.f, 1.f});
  CHECK(bn.running_var() == array<float>{1.f, 1.f, 1.f});
  CHECK(bn.eps() == 1e-5);
  CHECK(bn.momentum() == 0.1);
}

TEST_CASE("batch_norm2d: batch statistics in training, running statistics in eval") {
  std::mt19937 rng(1);
  nn::batch_norm2d bn(2);
  const autograd::variable x(random_array<float>(shape_t{4, 2, 3, 3}, rng, 1.0, 3.0));
  const autograd::variable y = bn(x);
  // Training: each channel of y has mean ~0.
  for (std::size_t c = 0; c < 2; ++c) {
    double s = 0;
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t j = 0; j < 9; ++j) s += y.value().data()[(i * 2 + c) * 9 + j];
    CHECK(std::abs(s / 36) < 1e-5);
    CHECK(bn.running_mean()(c) > 0.1f);  // 0.9 * 0 + 0.1 * mean, mean in [1, 3]
  }
  const array<float> rm = bn.running_mean(), rv = bn.running_var();
  bn.eval();
  CHECK_FALSE(bn.is_training());
  const autograd::variable z = bn(x);
  CHECK(bn.running_mean() == rm);  // unchanged in eval
  CHECK(bn.running_var() == rv);
  const float expected = (x.value()(0, 1, 0, 0) - rm(1)) / std::sqrt(rv(1) + 1e-5f);
  CHECK(z.value()(0, 1, 0, 0) == doctest::Approx(expected).epsilon(1e-5));

  CHECK_THROWS_AS(bn(autograd::variable(array<float>(shape_t{4, 2}, 0.f))), shape_error);  // BatchNorm2d wants 4-D
}

TEST_CASE("batch_norm2d::reset_parameters restores PyTorch's defaults") {
  std::mt19937 rng(2);
  nn::batch_norm2d bn(2);
  bn.weight().value() = array<float>{2.f, 3.f};
  bn.bias().value() = array<float>{1.f, 1.f};
  bn.running_mean() = array<float>{5.f, 5.f};
  bn.running_var() = array<float>{9.f, 9.f};
  bn.reset_parameters(rng);
  CHECK(bn.weight().value() == array<float>{1.f, 1.f});
  CHECK(bn.bias().value() == array<float>{0.f, 0.f});
  CHECK(bn.running_mean() == array<float>{0.f, 0.f});
  CHECK(bn.running_var() == array<float>{1.f, 1.f});
}
