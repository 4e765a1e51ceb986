#include <doctest/doctest.h>

#include "xquant/autograd/gradcheck.hpp"
#include "xquant/autograd/graph.hpp"
#include "xquant/autograd/ops.hpp"

using namespace xquant;
using namespace xquant::autograd;

TEST_CASE("a variable used twice receives the sum of both gradients") {
  variable x(array<float>{1.f, 2.f, 3.f}, true);
  variable y = mul(x, x);  // d/dx sum(x^2) = 2x
  variable l = sum(add(y, x));
  backward(l);
  CHECK(x.grad() == array<float>{3.f, 5.f, 7.f});
}

TEST_CASE("gradients accumulate across backward calls until zero_grad") {
  variable x(array<float>{1.f, -1.f}, true);
  backward(sum(x));
  backward(sum(x));
  CHECK(x.grad() == array<float>{2.f, 2.f});
  x.zero_grad();
  CHECK(x.grad() == array<float>{0.f, 0.f});
}

TEST_CASE("no_grad records no graph") {
  variable x(array<float>{1.f}, true);
  {
    no_grad_guard guard;
    const variable y = mul(x, x);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.node_ptr()->inputs.empty());
  }
  CHECK(mul(x, x).requires_grad());
}

TEST_CASE("backward errors") {
  variable c(array<float>{1.f, 2.f}, false);
  CHECK_THROWS_AS(backward(sum(c)), value_error);
  variable x(array<float>{1.f, 2.f}, true);
  CHECK_THROWS_AS(backward(mul(x, x)), shape_error);  // two elements, no seed
  CHECK_THROWS_AS(add(x, variable(array<float>{1.f}, false)), shape_error);
}

TEST_CASE("a deep chain does not overflow the stack") {
  variable x(array<float>{1.f}, true);
  variable y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, x);
  backward(y);
  CHECK(x.grad()(0) == 100001.f);
}

TEST_CASE("gradcheck passes the generic ops and catches a wrong gradient") {
  basic_variable<double> a(array<double>{{0.5, -1.5, 2.0}, {1.0, 0.25, -0.75}});
  basic_variable<double> b(array<double>{{1.5, 0.5, -2.0}, {3.0, -0.5, 0.75}});
  auto f = [](const std::vector<basic_variable<double>>& in) {
    return reshape(add(mul(in[0], in[1]), in[0]), shape_t{3, 2});
  };
  const gradcheck_result ok = gradcheck(f, {a, b});
  CHECK_MESSAGE(ok.ok, ok.first_failure);
  CHECK(ok.max_abs_error < 1e-8);

  // An op whose backward forgets a factor of 2 must fail.
  auto wrong = [](const std::vector<basic_variable<double>>& in) {
    array<double> v = in[0].value() * in[0].value();
    return make_result<double>(std::move(v), {in[0]}, [](node<double>& n) {
      auto& g = input_grad(*n.inputs[0]);
      for (std::size_t i = 0; i < g.size(); ++i) g.data()[i] += n.grad.data()[i] * n.inputs[0]->value.data()[i];
    });
  };
  const gradcheck_result bad = gradcheck(wrong, {a});
  CHECK_FALSE(bad.ok);
  CHECK(bad.first_failure.find("input 0") != std::string::npos);
}

TEST_CASE("gradients add up where they exist: gradient_accumulates and input_grad_target") {
  basic_variable<double> a(array<double>{{0.5, -1.5, 2.0}, {1.0, 0.25, -0.75}});
  basic_variable<double> b(array<double>{{1.5, 0.5, -2.0}, {3.0, -0.5, 0.75}});
  auto f = [](const std::vector<basic_variable<double>>& in) {
    return reshape(add(mul(in[0], in[1]), add(in[0], in[0])), shape_t{3, 2});
  };
  std::string where;
  CHECK_MESSAGE(gradient_accumulates(f, {a, b}, &where), where);

  // A backward that stores into a gradient which already holds a contribution must fail.
  auto overwrites = [](const std::vector<basic_variable<double>>& in) {
    array<double> v = in[0].value();
    return make_result<double>(std::move(v), {in[0]}, [](node<double>& n) {
      const grad_target<double> g = input_grad_target(*n.inputs[0]);
      for (std::size_t i = 0; i < n.grad.size(); ++i) g.data[i] = n.grad.data()[i];  // ignores g.fresh
    });
  };
  CHECK_FALSE(gradient_accumulates(overwrites, {a}));

  // input_grad_target: fresh (uninitialised, to be stored) only while there is no gradient.
  node<float> n;
  n.value = array<float>(shape_t{3}, 1.f);
  CHECK(input_grad_target(n).fresh);
  CHECK(n.grad.shape() == n.value.shape());
  CHECK_FALSE(input_grad_target(n).fresh);
}

TEST_CASE("add runs in parallel chunks with the same bits") {
  std::vector<float> values(std::size_t{1} << 17);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = float(i % 1000) * 0.37f - 100.f;
  const array<float> xa = xt::adapt(values, shape_t{values.size()});
  auto run = [&] {
    variable x(xa, true), y(xa * 0.5f, true);
    const variable z = add(x, y);
    backward(z, &xa);
    return std::vector<array<float>>{z.value(), x.grad(), y.grad()};
  };
  const auto one = run();
  set_num_threads(2);
  const auto two = run();
  set_num_threads(1);
  for (std::size_t i = 0; i < one.size(); ++i) CHECK(one[i] == two[i]);
}
