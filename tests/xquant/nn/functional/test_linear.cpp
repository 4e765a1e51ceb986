#include <doctest/doctest.h>

#include <random>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/linear.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

TEST_CASE("linear forward is x W^T + b") {
  const var64 x(array<double>{{1.0, 2.0}, {-1.0, 0.5}, {0.0, 3.0}});
  const var64 w(array<double>{{1.0, 0.0}, {2.0, -1.0}, {0.5, 0.5}});
  const var64 b(array<double>{0.1, 0.2, 0.3});
  const array<double> expected{{1.1, 0.2, 1.8}, {-0.9, -2.3, 0.05}, {0.1, -2.8, 1.8}};
  CHECK(max_abs_diff(linear(x, w, &b).value(), expected) < 1e-15);
  CHECK(max_abs_diff(linear(x, w).value(), array<double>(expected - array<double>{{0.1, 0.2, 0.3}})) < 1e-15);
}

TEST_CASE("linear passes gradcheck with and without bias") {
  std::mt19937 rng(1);
  const vars64 with_bias{v64(random_array(shape_t{3, 5}, rng)), v64(random_array(shape_t{4, 5}, rng)),
                         v64(random_array(shape_t{4}, rng))};
  NN_GRADCHECK([](const vars64& in) { return linear(in[0], in[1], &in[2]); }, with_bias);
  const vars64 no_bias{v64(random_array(shape_t{1, 7}, rng)), v64(random_array(shape_t{2, 7}, rng))};
  NN_GRADCHECK([](const vars64& in) { return linear(in[0], in[1]); }, no_bias);
}

TEST_CASE("linear rejects bad shapes with shape_error") {
  const var64 x(array<double>(shape_t{2, 3}, 0.0));
  const var64 w(array<double>(shape_t{4, 3}, 0.0));
  CHECK_THROWS_AS(linear(var64(array<double>(shape_t{2, 3, 1}, 0.0)), w), shape_error);
  CHECK_THROWS_AS(linear(x, var64(array<double>(shape_t{4, 2}, 0.0))), shape_error);
  CHECK_THROWS_AS(linear(var64(array<double>(shape_t{0, 3}, 0.0)), w), shape_error);
  const var64 bad_bias(array<double>(shape_t{3}, 0.0));
  CHECK_THROWS_AS(linear(x, w, &bad_bias), shape_error);
}
