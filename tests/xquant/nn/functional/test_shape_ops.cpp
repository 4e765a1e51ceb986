#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/shape_ops.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

TEST_CASE("flatten keeps the batch axis and the data order") {
  std::mt19937 rng(1);
  const array<double> x = random_array(shape_t{2, 3, 2, 2}, rng);
  const var64 y = flatten(var64(x));
  CHECK(y.shape() == shape_t{2, 12});
  CHECK(std::equal(x.begin(), x.end(), y.value().begin()));
  NN_GRADCHECK([](const vars64& in) { return flatten(in[0]); }, vars64{v64(x)});
}

TEST_CASE("concat joins along channels") {
  const var64 a(array<double>{{{1, 2}}, {{3, 4}}});              // [2, 1, 2]
  const var64 b(array<double>{{{5, 6}, {7, 8}}, {{9, 10}, {11, 12}}});  // [2, 2, 2]
  const var64 y = concat<double>({a, b});
  CHECK(y.value() == array<double>{{{1, 2}, {5, 6}, {7, 8}}, {{3, 4}, {9, 10}, {11, 12}}});
}

TEST_CASE("concat passes gradcheck, also with an input used twice") {
  std::mt19937 rng(2);
  const vars64 inputs{v64(random_array(shape_t{2, 1, 3, 2}, rng)), v64(random_array(shape_t{2, 3, 3, 2}, rng))};
  NN_GRADCHECK([](const vars64& in) { return concat(vars64{in[0], in[1], in[0]}); }, inputs);
}

TEST_CASE("concat rejects mismatched shapes") {
  const var64 a(array<double>(shape_t{2, 1, 3}, 0.0));
  CHECK_THROWS_AS(concat<double>({a, var64(array<double>(shape_t{3, 1, 3}, 0.0))}), shape_error);
  CHECK_THROWS_AS(concat<double>({a, var64(array<double>(shape_t{2, 1, 4}, 0.0))}), shape_error);
  CHECK_THROWS_AS(concat<double>({a, var64(array<double>(shape_t{2, 1}, 0.0))}), shape_error);
  CHECK_THROWS_AS(concat<double>({}), shape_error);
  CHECK_THROWS_AS(concat<double>({var64(array<double>(shape_t{4}, 0.0))}), shape_error);
}
