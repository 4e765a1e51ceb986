#include <doctest/doctest.h>

#include <random>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/channel_scale.hpp"

using namespace xquant;
using namespace nn_test;
using nn::functional::divide_channels;
using nn::functional::scale_channels;

TEST_CASE("scale_channels / divide_channels: values along axis 1 and axis 0") {
  std::mt19937 rng(3);
  const array<double> x = random_array({2, 3, 4, 5}, rng);
  const array<double> s = random_array({3}, rng, 0.5, 2.0);
  const var64 y = scale_channels(v64(x), v64(s), 1);
  const var64 z = divide_channels(v64(x), v64(s), 1);
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t h = 0; h < 4; ++h)
        for (std::size_t w = 0; w < 5; ++w) {
          CHECK(y.value()(n, c, h, w) == x(n, c, h, w) * s(c));
          CHECK(z.value()(n, c, h, w) == x(n, c, h, w) / s(c));
        }
  const array<double> s0 = random_array({2}, rng, 0.5, 2.0);
  const var64 y0 = scale_channels(v64(x), v64(s0), 0);
  CHECK(y0.value()(1, 2, 3, 4) == x(1, 2, 3, 4) * s0(1));
  CHECK(y0.value()(0, 2, 3, 4) == x(0, 2, 3, 4) * s0(0));
}

TEST_CASE("scale_channels / divide_channels pass float64 gradcheck (gradients to x and s)") {
  std::mt19937 rng(5);
  for (std::size_t axis : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
    CAPTURE(axis);
    const shape_t shape{3, 4, 2, 5};
    vars64 in{v64(random_array(shape, rng)), v64(random_array({shape[axis]}, rng, 0.5, 2.0))};
    NN_GRADCHECK([axis](const vars64& v) { return scale_channels(v[0], v[1], axis); }, in);
    NN_GRADCHECK([axis](const vars64& v) { return divide_channels(v[0], v[1], axis); }, in);
  }
  // [N, C] (rank 2) and the BN-folding composition: (x * s) / s along two axes.
  vars64 in{v64(random_array({6, 4}, rng)), v64(random_array({4}, rng, 0.5, 2.0))};
  NN_GRADCHECK([](const vars64& v) { return divide_channels(scale_channels(v[0], v[1], 1), v[1], 1); }, in);
}

TEST_CASE("scale_channels: several threads give bit-identical values and gradients") {
  std::mt19937 rng(7);
  const array<float> x = random_array<float>({16, 8, 30, 30}, rng);
  const array<float> s = random_array<float>({8}, rng, 0.5, 2.0);
  auto run = [&](std::size_t threads) {
    set_num_threads(threads);
    autograd::variable xv(x, true), sv(s, true);
    const autograd::variable y = divide_channels(scale_channels(xv, sv, 1), sv, 1);
    autograd::backward(autograd::sum(y));
    set_num_threads(1);
    return std::make_tuple(y.value(), xv.grad(), sv.grad());
  };
  const auto [y1, gx1, gs1] = run(1);
  const auto [y2, gx2, gs2] = run(2);
  CHECK(bit_identical(y1, y2));
  CHECK(bit_identical(gx1, gx2));
  CHECK(bit_identical(gs1, gs2));
}

TEST_CASE("scale_channels / divide_channels reject bad shapes and zero divisors") {
  const var64 x(array<double>(shape_t{2, 3, 4}, 1.0));
  CHECK_THROWS_AS(scale_channels(x, var64(array<double>(shape_t{4}, 1.0)), 1), shape_error);
  CHECK_THROWS_AS(scale_channels(x, var64(array<double>(shape_t{3}, 1.0)), 3), shape_error);
  CHECK_THROWS_AS(scale_channels(x, var64(array<double>(shape_t{3, 1}, 1.0)), 1), shape_error);
  array<double> s(shape_t{3}, 1.0);
  s(1) = 0.0;
  CHECK_THROWS_AS(divide_channels(x, var64(s), 1), value_error);
  CHECK_NOTHROW(scale_channels(x, var64(s), 1));
}

TEST_CASE("divide_channels factor gradient: float row sums, then a double sum over the rows") {
  // The specification of the float reduction, written out: any other order changes bits.
  std::mt19937 rng(9);
  const shape_t shape{7, 5, 3, 11};  // 35 rows: groups of four and a remainder
  const array<float> x = random_array<float>(shape, rng);
  const array<float> s = random_array<float>({5}, rng, 0.5, 2.0);
  const array<float> dy = random_array<float>(shape, rng);
  for (bool divide : {false, true}) {
    autograd::variable xv(x, true), sv(s, true);
    const autograd::variable y = divide ? divide_channels(xv, sv, 1) : scale_channels(xv, sv, 1);
    autograd::backward(y, &dy);
    const float* src = divide ? y.value().data() : x.data();
    for (std::size_t c = 0; c < 5; ++c) {
      double acc = 0;
      for (std::size_t o = 0; o < 7; ++o) {
        float row = 0;
        for (std::size_t i = 0; i < 33; ++i) row += dy.data()[(o * 5 + c) * 33 + i] * src[(o * 5 + c) * 33 + i];
        acc += static_cast<double>(row);
      }
      const float expected = divide ? static_cast<float>(-acc / static_cast<double>(s(c))) : static_cast<float>(acc);
      // Equal up to rounding: with -march=native the compiler may contract row += a * b into
      // an FMA here or in the kernel, and not in both.
      CHECK(sv.grad()(c) == doctest::Approx(expected).epsilon(1e-5));
      for (std::size_t i = 0; i < 33; ++i) {
        const float g = dy.data()[(2 * 5 + c) * 33 + i];
        CHECK(xv.grad().data()[(2 * 5 + c) * 33 + i] == (divide ? g / s(c) : g * s(c)));
      }
    }
  }
}
