#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/loss.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

TEST_CASE("softmax_cross_entropy equals a hand-computed value") {
  const var64 logits(array<double>{{1.0, 2.0, 3.0}, {0.5, 0.5, -1.0}});
  const std::vector<int> labels{2, 0};
  // row 0: log(e^1 + e^2 + e^3) - 3; row 1: log(2 e^0.5 + e^-1) - 0.5
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  const double l1 = std::log(2 * std::exp(0.5) + std::exp(-1.0)) - 0.5;
  const var64 loss = softmax_cross_entropy(logits, labels);
  CHECK(loss.shape() == shape_t{1});
  CHECK(loss.value()(0) == doctest::Approx((l0 + l1) / 2).epsilon(1e-14));
}

TEST_CASE("softmax_cross_entropy is stable for large logits") {
  const var64 logits(array<double>{{1000.0, 0.0}, {-1000.0, 1000.0}});
  const std::vector<int> labels{0, 0};
  const var64 loss = softmax_cross_entropy(logits, labels);
  CHECK(std::isfinite(loss.value()(0)));
  CHECK(loss.value()(0) == doctest::Approx(1000.0));  // (0 + 2000) / 2
  const autograd::variable f(array<float>{{1e4f, -1e4f, 0.f}});
  const std::vector<int> l{1};
  CHECK(std::isfinite(softmax_cross_entropy(f, l).value()(0)));
}

TEST_CASE("softmax_cross_entropy passes gradcheck") {
  std::mt19937 rng(4);
  const std::vector<int> labels{3, 0, 1};
  NN_GRADCHECK([&](const vars64& in) { return softmax_cross_entropy(in[0], labels); },
               vars64{v64(random_array(shape_t{3, 5}, rng, -3, 3))});
}

TEST_CASE("softmax_cross_entropy and count_correct check their labels") {
  const var64 logits(array<double>(shape_t{2, 3}, 0.0));
  CHECK_THROWS_AS(softmax_cross_entropy(logits, std::vector<int>{0, 3}), value_error);
  CHECK_THROWS_AS(softmax_cross_entropy(logits, std::vector<int>{-1, 0}), value_error);
  CHECK_THROWS_AS(softmax_cross_entropy(logits, std::vector<int>{0}), shape_error);
  CHECK_THROWS_AS(softmax_cross_entropy(var64(array<double>(shape_t{2}, 0.0)), std::vector<int>{0, 0}), shape_error);
  CHECK_THROWS_AS(count_correct(logits, std::vector<int>{0, 5}), value_error);
}

TEST_CASE("count_correct counts rows whose first maximum is the label") {
  const var64 logits(array<double>{{0.1, 0.9, 0.0}, {2.0, 1.0, 2.0}, {0.0, 0.0, 5.0}, {1.0, 3.0, 2.0}});
  CHECK(count_correct(logits, std::vector<int>{1, 0, 2, 2}) == 3);
  CHECK(count_correct(logits, std::vector<int>{1, 2, 2, 2}) == 2);  // tie: the first maximum wins
}
