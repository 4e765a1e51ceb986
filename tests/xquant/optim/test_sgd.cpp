#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "xquant/optim/sgd.hpp"

using namespace xquant;
using xquant::autograd::variable;

namespace {

// torch.optim.SGD's rule written out in double, as the oracle (docs of torch.optim.SGD):
//   g += wd * w;  b = (first ? g : mu * b + (1 - tau) * g);  g = nesterov ? g + mu * b : b;
//   w -= lr * g
struct sgd_reference {
  double lr, mu, tau, wd;
  bool nesterov;
  std::vector<double> w, b;
  bool first = true;

  void step(const std::vector<double>& grad) {
    if (b.empty()) b.assign(w.size(), 0.0);
    for (std::size_t j = 0; j < w.size(); ++j) {
      double g = grad[j] + wd * w[j];
      if (mu != 0) {
        b[j] = first ? g : mu * b[j] + (1 - tau) * g;
        g = nesterov ? g + mu * b[j] : b[j];
      }
      w[j] -= lr * g;
    }
    first = false;
  }
};

array<float> to_float(const std::vector<double>& v) {
  array<float> a = array<float>::from_shape({v.size()});
  for (std::size_t i = 0; i < v.size(); ++i) a(i) = static_cast<float>(v[i]);
  return a;
}

// Gradients that change from step to step, so buffers and decay matter.
std::vector<double> gradient_at(int step, std::size_t n) {
  std::vector<double> g(n);
  for (std::size_t j = 0; j < n; ++j) g[j] = std::sin(1.3 * step + 0.7 * static_cast<double>(j)) * 0.5 + 0.1;
  return g;
}

void run_against_reference(const optim::sgd_options& o, int steps) {
  const std::vector<double> w0 = {1.0, -2.0, 0.5, 0.25, -0.125};
  variable w(to_float(w0), true);
  optim::sgd opt({{"w", &w}}, o);
  sgd_reference ref{o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov, w0, {}};
  for (int s = 0; s < steps; ++s) {
    const auto g = gradient_at(s, w0.size());
    w.grad() = to_float(g);
    opt.step();
    std::vector<double> g_seen(g.size());
    for (std::size_t j = 0; j < g.size(); ++j) g_seen[j] = static_cast<float>(g[j]);  // what the optimizer saw
    ref.step(g_seen);
    for (std::size_t j = 0; j < w0.size(); ++j) {
      INFO("step ", s, " element ", j);
      CHECK(w.value()(j) == doctest::Approx(ref.w[j]).epsilon(1e-5));
    }
  }
  CHECK(opt.step_count(0) == static_cast<std::uint64_t>(steps));
}

}  // namespace

TEST_CASE("sgd: plain, momentum and nesterov steps computed by hand") {
  // w = 1, constant gradient 1, lr 0.1.
  SUBCASE("plain") {
    variable w(array<float>{1.0f}, true);
    optim::sgd opt({{"w", &w}}, {.lr = 0.1});
    for (int s = 0; s < 3; ++s) {
      w.grad() = array<float>{1.0f};
      opt.step();
    }
    CHECK(w.value()(0) == doctest::Approx(0.7).epsilon(1e-6));
    CHECK(opt.state().empty());  // no momentum, no buffer
  }
  SUBCASE("momentum 0.9: buf = 1, 1.9, 2.71; w = 0.9, 0.71, 0.439") {
    variable w(array<float>{1.0f}, true);
    optim::sgd opt({{"w", &w}}, {.lr = 0.1, .momentum = 0.9});
    const double expect_w[] = {0.9, 0.71, 0.439};
    const double expect_b[] = {1.0, 1.9, 2.71};
    for (int s = 0; s < 3; ++s) {
      w.grad() = array<float>{1.0f};
      opt.step();
      CHECK(w.value()(0) == doctest::Approx(expect_w[s]).epsilon(1e-6));
      CHECK((*opt.state()[0].value)(0) == doctest::Approx(expect_b[s]).epsilon(1e-6));
    }
  }
  SUBCASE("nesterov 0.9: d = 1 + 0.9 * 1 = 1.9, then 1 + 0.9 * 1.9 = 2.71; w = 0.81, 0.539") {
    variable w(array<float>{1.0f}, true);
    optim::sgd opt({{"w", &w}}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
    w.grad() = array<float>{1.0f};
    opt.step();
    CHECK(w.value()(0) == doctest::Approx(0.81).epsilon(1e-6));
    w.grad() = array<float>{1.0f};
    opt.step();
    CHECK(w.value()(0) == doctest::Approx(0.539).epsilon(1e-6));
  }
  SUBCASE("weight decay 0.5 is coupled: g = 1 + 0.5 * 1 = 1.5; w = 1 - 0.15 = 0.85; p.grad unchanged") {
    variable w(array<float>{1.0f}, true);
    optim::sgd opt({{"w", &w}}, {.lr = 0.1, .weight_decay = 0.5});
    w.grad() = array<float>{1.0f};
    opt.step();
    CHECK(w.value()(0) == doctest::Approx(0.85).epsilon(1e-6));
    CHECK(w.grad()(0) == 1.0f);
  }
  SUBCASE("dampening applies from the second step on: buf = 1, then 0.9 * 1 + 0.5 * 1 = 1.4") {
    variable w(array<float>{1.0f}, true);
    optim::sgd opt({{"w", &w}}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
    w.grad() = array<float>{1.0f};
    opt.step();
    CHECK(w.value()(0) == doctest::Approx(0.9).epsilon(1e-6));
    w.grad() = array<float>{1.0f};
    opt.step();
    CHECK(w.value()(0) == doctest::Approx(0.9 - 0.14).epsilon(1e-6));
  }
}

TEST_CASE("sgd matches the PyTorch formulas over many steps") {
  SUBCASE("plain") { run_against_reference({.lr = 0.05}, 12); }
  SUBCASE("momentum + weight decay (the reference recipe)") {
    run_against_reference({.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4}, 12);
  }
  SUBCASE("nesterov + weight decay") {
    run_against_reference({.lr = 0.03, .momentum = 0.8, .weight_decay = 1e-2, .nesterov = true}, 12);
  }
  SUBCASE("dampening") { run_against_reference({.lr = 0.1, .momentum = 0.5, .dampening = 0.3}, 12); }
}

TEST_CASE("sgd skips parameters without a gradient and does not start their momentum") {
  variable a(array<float>{1.0f, 2.0f}, true);
  variable b(array<float>{3.0f}, true);
  optim::sgd opt({{"a", &a}, {"b", &b}}, {.lr = 0.1, .momentum = 0.9});
  a.grad() = array<float>{1.0f, 1.0f};
  opt.step();  // b has no gradient yet
  CHECK(b.value()(0) == 3.0f);
  CHECK(opt.step_count(0) == 1);
  CHECK(opt.step_count(1) == 0);
  b.grad() = array<float>{2.0f};
  a.grad() = array<float>{1.0f, 1.0f};
  opt.step();
  // b's first update: buf = g (not 0.9 * 0 + g, which is the same here, but the count says "first")
  CHECK(b.value()(0) == doctest::Approx(3.0 - 0.2).epsilon(1e-6));
  CHECK(a.value()(0) == doctest::Approx(1.0 - 0.1 - 0.19).epsilon(1e-6));
  CHECK(opt.step_count(1) == 1);
}

TEST_CASE("sgd hyper-parameter errors") {
  variable w(array<float>{1.0f}, true);
  auto make = [&](const optim::sgd_options& o) { optim::sgd opt({{"w", &w}}, o); };
  CHECK_THROWS_AS(make({.lr = -0.1}), value_error);
  CHECK_THROWS_AS(make({.lr = std::nan("")}), value_error);
  CHECK_THROWS_AS(make({.lr = 0.1, .momentum = 1.0}), value_error);
  CHECK_THROWS_AS(make({.lr = 0.1, .momentum = -0.1}), value_error);
  CHECK_THROWS_AS(make({.lr = 0.1, .momentum = 0.9, .dampening = 1.5}), value_error);
  CHECK_THROWS_AS(make({.lr = 0.1, .weight_decay = -1e-4}), value_error);
  CHECK_THROWS_WITH_AS(make({.lr = 0.1, .nesterov = true}),
                       doctest::Contains("nesterov momentum needs momentum > 0"), value_error);
  CHECK_THROWS_AS(make({.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}), value_error);
  CHECK_NOTHROW(make({.lr = 0.0, .momentum = 0.0}));
  CHECK_NOTHROW(make({.lr = 0.1, .momentum = 0.9, .nesterov = true}));
}
