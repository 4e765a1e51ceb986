// The layers without parameters: activation.hpp, pooling.hpp, flatten.hpp.
#include <doctest/doctest.h>

#include <random>

#include "../nn_test_util.hpp"
#include "xquant/nn/layers/activation.hpp"
#include "xquant/nn/layers/flatten.hpp"
#include "xquant/nn/layers/pooling.hpp"

using namespace xquant;
using namespace nn_test;

TEST_CASE("parameterless layers wrap their ops and register nothing") {
  std::mt19937 rng(0);
  const autograd::variable x(random_array<float>(shape_t{2, 3, 6, 5}, rng, -8.0, 8.0));
  nn::relu relu;
  nn::relu6 relu6;
  nn::max_pool2d max_pool(2);
  nn::max_pool2d max_pool_s1(3, 1, 1);
  nn::avg_pool2d avg_pool(2);
  nn::global_avg_pool gap;
  nn::flatten flatten;
  CHECK(bit_identical(relu(x).value(), nn::functional::relu(x).value()));
  CHECK(bit_identical(relu6(x).value(), nn::functional::relu6(x).value()));
  CHECK(max_pool(x).shape() == shape_t{2, 3, 3, 2});
  CHECK(max_pool.options().stride_h == 2);
  CHECK(max_pool_s1(x).shape() == shape_t{2, 3, 6, 5});
  CHECK(avg_pool(x).shape() == shape_t{2, 3, 3, 2});
  CHECK(gap(x).shape() == shape_t{2, 3});
  CHECK(flatten(x).shape() == shape_t{2, 90});
  for (nn::module* m : std::initializer_list<nn::module*>{&relu, &relu6, &max_pool, &avg_pool, &gap, &flatten}) {
    CHECK(m->parameters().empty());
    CHECK(m->buffers().empty());
  }
}
