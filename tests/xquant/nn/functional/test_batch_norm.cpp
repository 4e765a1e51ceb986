#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/batch_norm.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

namespace {
// Per-channel mean and biased variance of x [N, C, H, W], the straightforward way.
void moments(const array<double>& x, std::size_t c, double& mean, double& var) {
  const std::size_t n = x.shape()[0], h = x.shape()[2], w = x.shape()[3];
  double s = 0, s2 = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t a = 0; a < h; ++a)
      for (std::size_t b = 0; b < w; ++b) s += x(i, c, a, b);
  const double m = double(n * h * w);
  mean = s / m;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t a = 0; a < h; ++a)
      for (std::size_t b = 0; b < w; ++b) s2 += (x(i, c, a, b) - mean) * (x(i, c, a, b) - mean);
  var = s2 / m;
}
}  // namespace

TEST_CASE("batch_norm training: batch statistics, PyTorch's running-statistics update") {
  std::mt19937 rng(1);
  const array<double> x = random_array(shape_t{3, 2, 2, 3}, rng, -2.0, 3.0);
  const var64 gamma(array<double>{1.5, -0.5}), beta(array<double>{0.25, 1.0});
  array<double> rm{0.5, -0.5}, rv{2.0, 0.5};
  const double momentum = 0.2, eps = 1e-3;
  const var64 y = batch_norm(var64(x), gamma, beta, rm, rv, true, momentum, eps);
  const double count = 3 * 2 * 3;
  for (std::size_t c = 0; c < 2; ++c) {
    double mean = 0, var = 0;
    moments(x, c, mean, var);
    CHECK(rm(c) == doctest::Approx((1 - momentum) * (c == 0 ? 0.5 : -0.5) + momentum * mean).epsilon(1e-14));
    // unbiased variance in the running statistic
    CHECK(rv(c) == doctest::Approx((1 - momentum) * (c == 0 ? 2.0 : 0.5) + momentum * var * count / (count - 1))
                       .epsilon(1e-14));
    for (std::size_t i = 0; i < 3; ++i)
      for (std::size_t a = 0; a < 2; ++a)
        for (std::size_t b = 0; b < 3; ++b) {
          const double expected = gamma.value()(c) * (x(i, c, a, b) - mean) / std::sqrt(var + eps) + beta.value()(c);
          CHECK(y.value()(i, c, a, b) == doctest::Approx(expected).epsilon(1e-12));
        }
  }
}

TEST_CASE("batch_norm eval uses and keeps the running statistics") {
  std::mt19937 rng(2);
  const array<double> x = random_array(shape_t{2, 3}, rng);
  const var64 gamma(array<double>{1.0, 2.0, 3.0}), beta(array<double>{0.0, 0.5, -0.5});
  array<double> rm{0.1, 0.2, 0.3}, rv{1.0, 4.0, 0.25};
  const array<double> rm0 = rm, rv0 = rv;
  const var64 y = batch_norm(var64(x), gamma, beta, rm, rv, false);
  CHECK(rm == rm0);
  CHECK(rv == rv0);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t c = 0; c < 3; ++c) {
      const double expected = gamma.value()(c) * (x(i, c) - rm(c)) / std::sqrt(rv(c) + 1e-5) + beta.value()(c);
      CHECK(y.value()(i, c) == doctest::Approx(expected).epsilon(1e-14));
    }
  // A single sample is fine in evaluation.
  CHECK_NOTHROW(batch_norm(var64(array<double>(shape_t{1, 3}, 1.0)), gamma, beta, rm, rv, false));
}

TEST_CASE("batch_norm passes gradcheck through the batch statistics (training) and in eval") {
  std::mt19937 rng(3);
  for (bool training : {true, false}) {
    for (const shape_t& shape : {shape_t{3, 2, 3, 2}, shape_t{2, 3, 1, 3}, shape_t{5, 3}}) {
      const std::size_t c = shape[1];
      array<double> rm = random_array(shape_t{c}, rng), rv = random_array(shape_t{c}, rng, 0.5, 2.0);
      const vars64 inputs{v64(random_array(shape, rng, -2, 2)), v64(random_array(shape_t{c}, rng, 0.5, 1.5)),
                          v64(random_array(shape_t{c}, rng))};
      auto f = [&](const vars64& in) { return batch_norm(in[0], in[1], in[2], rm, rv, training); };
      INFO((training ? "training " : "eval "), shape_string(shape));
      NN_GRADCHECK(f, inputs);
    }
  }
}

TEST_CASE("batch_norm rejects bad input") {
  const var64 g(array<double>(shape_t{2}, 1.0)), b(array<double>(shape_t{2}, 0.0));
  array<double> rm(shape_t{2}, 0.0), rv(shape_t{2}, 1.0), bad(shape_t{3}, 0.0);
  const var64 x(array<double>(shape_t{2, 2, 3, 3}, 1.0));
  CHECK_THROWS_AS(batch_norm(var64(array<double>(shape_t{2, 2, 3}, 1.0)), g, b, rm, rv, true), shape_error);
  CHECK_THROWS_AS(batch_norm(var64(array<double>(shape_t{2, 3, 3, 3}, 1.0)), g, b, rm, rv, true), shape_error);
  CHECK_THROWS_AS(batch_norm(x, var64(array<double>(shape_t{3}, 1.0)), b, rm, rv, true), shape_error);
  CHECK_THROWS_AS(batch_norm(x, g, b, bad, rv, true), shape_error);
  CHECK_THROWS_AS(batch_norm(x, g, b, rm, bad, true), shape_error);
  CHECK_THROWS_AS(batch_norm(var64(array<double>(shape_t{0, 2, 3, 3}, 1.0)), g, b, rm, rv, true), shape_error);
  // One value per channel cannot be normalised by batch statistics (PyTorch raises too).
  CHECK_THROWS_AS(batch_norm(var64(array<double>(shape_t{1, 2}, 1.0)), g, b, rm, rv, true), value_error);
  CHECK_THROWS_AS(batch_norm(x, g, b, rm, rv, true, 1.5), value_error);
  CHECK_THROWS_AS(batch_norm(x, g, b, rm, rv, true, 0.1, 0.0), value_error);
}

TEST_CASE("batch_norm gives the same bits with 1 and 2 threads (split over channels)") {
  std::mt19937 rng(4);
  const array<float> x = random_array<float>(shape_t{6, 5, 7, 7}, rng, -1.0, 3.0);
  const array<float> seed = random_array<float>(shape_t{6, 5, 7, 7}, rng);
  auto run = [&] {
    autograd::variable xv(x, true), g(array<float>(shape_t{5}, 1.5f), true), b(array<float>(shape_t{5}, 0.f), true);
    array<float> rm(shape_t{5}, 0.f), rv(shape_t{5}, 1.f);
    const autograd::variable y = batch_norm(xv, g, b, rm, rv, true);
    autograd::backward(y, &seed);
    return std::vector<array<float>>{y.value(), xv.grad(), g.grad(), b.grad(), rm, rv};
  };
  const auto one = run();
  threads_guard threads(2);
  const auto two = run();
  const auto again = run();
  for (std::size_t i = 0; i < one.size(); ++i) {
    CHECK(bit_identical(two[i], again[i]));
    CHECK(bit_identical(one[i], two[i]));
  }
}
