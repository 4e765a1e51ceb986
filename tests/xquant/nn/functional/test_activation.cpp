#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/activation.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

TEST_CASE("relu and relu6 forward, NaN propagates") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const var64 x(array<double>{-2.0, 0.0, 3.0, 6.0, 7.5, nan});
  const array<double> r = relu(x).value();
  const array<double> r6 = relu6(x).value();
  CHECK(r(0) == 0.0);
  CHECK(r(2) == 3.0);
  CHECK(r(4) == 7.5);
  CHECK(std::isnan(r(5)));
  CHECK(r6(3) == 6.0);
  CHECK(r6(4) == 6.0);
  CHECK(std::isnan(r6(5)));
}

TEST_CASE("relu and relu6 gradients: none at the kinks (PyTorch's convention)") {
  var64 x(array<double>{-1.0, 0.0, 0.5, 6.0, 7.0}, true);
  autograd::backward(autograd::sum(relu(x)));
  CHECK(x.grad() == array<double>{0.0, 0.0, 1.0, 1.0, 1.0});
  x.zero_grad();
  autograd::backward(autograd::sum(relu6(x)));
  CHECK(x.grad() == array<double>{0.0, 0.0, 1.0, 0.0, 0.0});  // 0 < x < 6 strictly
}

TEST_CASE("relu and relu6 pass gradcheck away from the kinks") {
  std::mt19937 rng(2);
  array<double> x = distinct_array(shape_t{2, 3, 4, 5}, rng, 0.11);  // spans about [-6.6, 6.6], no value at a kink
  NN_GRADCHECK([](const vars64& in) { return relu(in[0]); }, vars64{v64(x)});
  NN_GRADCHECK([](const vars64& in) { return relu6(in[0]); }, vars64{v64(x)});
}

TEST_CASE("relu runs in parallel chunks with identical results, forward and backward") {
  std::mt19937 rng(3);
  const array<float> x = random_array<float>(shape_t{1 << 17}, rng);
  const array<float> seed = random_array<float>(shape_t{1 << 17}, rng);
  auto run = [&] {
    autograd::variable xv(x, true);
    const autograd::variable y = relu(xv);
    autograd::backward(y, &seed);
    return std::vector<array<float>>{y.value(), xv.grad()};
  };
  const auto one = run();
  threads_guard threads(2);
  const auto two = run();
  CHECK(bit_identical(two[0], one[0]));
  CHECK(bit_identical(two[1], one[1]));
}
