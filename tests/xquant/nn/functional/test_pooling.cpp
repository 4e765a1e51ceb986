#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/pooling.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

TEST_CASE("max_pool2d on a hand example: the gradient goes to the first maximum") {
  var64 x(array<double>{{{{1, 3, 2, 4}, {5, 6, 6, 0}, {7, 2, 9, 9}, {1, 8, 9, 3}}}}, true);
  const var64 y = max_pool2d(x, 2);
  CHECK(y.value() == array<double>{{{{6, 6}, {8, 9}}}});
  const array<double> seed{{{{1, 2}, {3, 4}}}};
  autograd::backward(y, &seed);
  CHECK(x.grad() == array<double>{{{{0, 0, 0, 0}, {0, 1, 2, 0}, {0, 0, 4, 0}, {0, 3, 0, 0}}}});
}

TEST_CASE("max_pool2d with overlapping windows and padding sums gradients, padding never wins") {
  var64 x(array<double>{{{{-1, -2}, {-3, -4}}}}, true);
  const var64 y = max_pool2d(x, pool2d_options::square(3, 1, 1));  // every window sees -1
  CHECK(y.value() == array<double>{{{{-1, -1}, {-1, -1}}}});
  autograd::backward(autograd::sum(y));
  CHECK(x.grad() == array<double>{{{{4, 0}, {0, 0}}}});
}

TEST_CASE("max_pool2d passes gradcheck (distinct values, odd sizes, stride, padding)") {
  std::mt19937 rng(1);
  for (const pool2d_options& opt : {pool2d_options::square(2), pool2d_options::square(3, 2, 1),
                                    pool2d_options::square(3, 1, 1), pool2d_options{2, 3, 1, 2, 1, 0}}) {
    INFO("kernel ", opt.kernel_h, "x", opt.kernel_w, " stride ", opt.stride_h, "x", opt.stride_w);
    NN_GRADCHECK([opt](const vars64& in) { return max_pool2d(in[0], opt); },
                 vars64{v64(distinct_array(shape_t{2, 3, 5, 7}, rng))});
  }
}

TEST_CASE("avg_pool2d counts padding in the divisor (count_include_pad = true)") {
  const var64 x(array<double>{{{{1, 2}, {3, 4}}}});
  const var64 y = avg_pool2d(x, pool2d_options::square(2, 1, 1));
  const array<double> expected{{{{0.25, 0.75, 0.5}, {1.0, 2.5, 1.5}, {0.75, 1.75, 1.0}}}};
  CHECK(max_abs_diff(y.value(), expected) < 1e-15);
  CHECK(avg_pool2d(x, 2).value()(0, 0, 0, 0) == 2.5);
}

TEST_CASE("avg_pool2d and global_avg_pool pass gradcheck") {
  std::mt19937 rng(2);
  for (const pool2d_options& opt : {pool2d_options::square(2), pool2d_options::square(3, 2, 1),
                                    pool2d_options{3, 2, 1, 2, 1, 1}}) {
    NN_GRADCHECK([opt](const vars64& in) { return avg_pool2d(in[0], opt); },
                 vars64{v64(random_array(shape_t{2, 3, 5, 7}, rng))});
  }
  NN_GRADCHECK([](const vars64& in) { return global_avg_pool(in[0]); },
               vars64{v64(random_array(shape_t{2, 3, 5, 7}, rng))});
}

TEST_CASE("global_avg_pool is the mean of each plane, (N, C, H, W) -> (N, C)") {
  const var64 x(array<double>{{{{1, 2}, {3, 4}}, {{0, 0}, {0, 8}}}});
  const var64 y = global_avg_pool(x);
  CHECK(y.shape() == shape_t{1, 2});
  CHECK(y.value() == array<double>{{2.5, 2.0}});
}

TEST_CASE("pooling rejects bad input") {
  const var64 x(array<double>(shape_t{1, 2, 4, 4}, 0.0));
  CHECK_THROWS_AS(max_pool2d(var64(array<double>(shape_t{2, 4, 4}, 0.0)), 2), shape_error);
  CHECK_THROWS_AS(avg_pool2d(var64(array<double>(shape_t{0, 2, 4, 4}, 0.0)), 2), shape_error);
  CHECK_THROWS_AS(max_pool2d(x, 5), shape_error);                                  // kernel > input
  CHECK_NOTHROW(max_pool2d(x, 5, 1, 2));                                           // 5 <= 4 + 2 * 2
  CHECK_THROWS_AS(max_pool2d(x, 2, 2, 2), value_error);                            // pad > kernel / 2
  CHECK_THROWS_AS(avg_pool2d(x, pool2d_options{2, 2, 0, 2, 0, 0}), value_error);   // stride 0
  CHECK_THROWS_AS(global_avg_pool(var64(array<double>(shape_t{2, 4}, 0.0))), shape_error);
}
