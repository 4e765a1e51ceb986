// exact_eval.hpp: the evaluation-mode bias of a converted QAT layer is the int8 model's
// int32 bias, and a converted model's fake-quant forward then equals the int8 model.

#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "xquant/nn/layers.hpp"
#include "xquant/nn/layers/exact_eval.hpp"
#include "xquant/nn/layers/qat.hpp"

using namespace xquant;

namespace {

autograd::variable vector_of(std::initializer_list<float> v) {
  array<float> a(shape_t{v.size()});
  std::copy(v.begin(), v.end(), a.begin());
  return autograd::variable(a);
}

}  // namespace

TEST_CASE("accumulator_bias rounds to the grid input scale times weight scale, half to even") {
  const autograd::variable b = vector_of({0.3f, -0.07f, 0.1875f, 1.0f});
  const quant_params per_channel = quant_params::along(0, {0.25f, 0.1f, 0.25f, 0.5f}, {0, 0, 0, 0});
  // Accumulator scales 0.125, 0.05, 0.125, 0.25: 0.3 / 0.125 = 2.4 -> 2, -0.07 / 0.05 = -1.4
  // -> -1, 0.1875 / 0.125 = 1.5 -> 2 (tie to even), 1.0 / 0.25 = 4.
  const array<double> q = nn::detail::accumulator_bias(&b, 4, 0.5f, per_channel);
  CHECK(q(0) == 0.25);
  CHECK(q(1) == -0.5 * static_cast<double>(0.1f));
  CHECK(q(2) == 0.25);
  CHECK(q(3) == 1.0);

  const quant_params per_tensor = quant_params::tensor(0.25f, 0);
  const array<double> t = nn::detail::accumulator_bias(&b, 4, 0.5f, per_tensor);
  CHECK(t(0) == 0.25);    // 0.3 / 0.125 = 2.4 -> 2
  CHECK(t(1) == -0.125);  // -0.07 / 0.125 = -0.56 -> -1
  CHECK(t(3) == 1.0);     // 8

  // Never converted: the bias as it is. No bias: zeros.
  const array<double> raw = nn::detail::accumulator_bias(&b, 4, std::nullopt, per_channel);
  CHECK(raw(1) == static_cast<double>(-0.07f));
  const array<double> none = nn::detail::accumulator_bias(nullptr, 4, 0.5f, per_channel);
  CHECK(none(3) == 0.0);
}
