#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "xquant/optim/adam.hpp"

using namespace xquant;
using xquant::autograd::variable;

namespace {

// torch.optim.Adam / AdamW (amsgrad off) written out in double, as the oracle:
//   adamw: w *= 1 - lr * wd          adam: g += wd * w
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
struct adam_reference {
  double lr, b1, b2, eps, wd;
  bool decoupled;
  std::vector<double> w, m, v;
  int t = 0;

  void step(const std::vector<double>& grad) {
    if (m.empty()) m.assign(w.size(), 0.0), v.assign(w.size(), 0.0);
    ++t;
    for (std::size_t j = 0; j < w.size(); ++j) {
      double g = grad[j];
      if (decoupled) {
        w[j] *= 1 - lr * wd;
      } else {
        g += wd * w[j];
      }
      m[j] = b1 * m[j] + (1 - b1) * g;
      v[j] = b2 * v[j] + (1 - b2) * g * g;
      const double m_hat = m[j] / (1 - std::pow(b1, t));
      const double denom = std::sqrt(v[j]) / std::sqrt(1 - std::pow(b2, t)) + eps;
      w[j] -= lr * m_hat / denom;
    }
  }
};

array<float> to_float_array(const std::vector<double>& v) {
  array<float> a = array<float>::from_shape({v.size()});
  for (std::size_t i = 0; i < v.size(); ++i) a(i) = static_cast<float>(v[i]);
  return a;
}

std::vector<double> adam_gradient_at(int step, std::size_t n) {
  std::vector<double> g(n);
  for (std::size_t j = 0; j < n; ++j) {
    g[j] = std::cos(0.9 * step + 1.1 * static_cast<double>(j)) * (0.2 + 0.3 * static_cast<double>(j));
  }
  return g;
}

template <class Opt, class Options>
void run_against_reference(const Options& o, bool decoupled, int steps) {
  const std::vector<double> w0 = {1.0, -2.0, 0.5, 0.25, -0.125, 3.0};
  variable w(to_float_array(w0), true);
  Opt opt({{"w", &w}}, o);
  adam_reference ref{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, decoupled, w0, {}, {}};
  for (int s = 0; s < steps; ++s) {
    const auto g = adam_gradient_at(s, w0.size());
    w.grad() = to_float_array(g);
    opt.step();
    std::vector<double> g_seen(g.size());
    for (std::size_t j = 0; j < g.size(); ++j) g_seen[j] = static_cast<float>(g[j]);
    ref.step(g_seen);
    for (std::size_t j = 0; j < w0.size(); ++j) {
      INFO("step ", s, " element ", j);
      CHECK(w.value()(j) == doctest::Approx(ref.w[j]).epsilon(2e-5));
    }
  }
  // The moment estimates are state too.
  const auto state = opt.state();
  REQUIRE(state.size() == 2);
  CHECK(state[0].name == "w.exp_avg");
  CHECK(state[1].name == "w.exp_avg_sq");
  for (std::size_t j = 0; j < w0.size(); ++j) {
    CHECK((*state[0].value)(j) == doctest::Approx(ref.m[j]).epsilon(1e-5));
    CHECK((*state[1].value)(j) == doctest::Approx(ref.v[j]).epsilon(1e-5));
  }
  CHECK(opt.step_count(0) == static_cast<std::uint64_t>(steps));
}

}  // namespace

TEST_CASE("adam: a constant gradient moves every step by lr / (1 + eps)") {
  // m_t = 1 - b1^t and v_t = 1 - b2^t, so both bias-corrected moments are exactly 1 and
  // each step is lr * 1 / (1 + eps): w_t = 1 - t * lr / (1 + eps).
  variable w(array<float>{1.0f}, true);
  optim::adam opt({{"w", &w}}, {.lr = 0.01, .eps = 1e-3});
  for (int t = 1; t <= 5; ++t) {
    w.grad() = array<float>{1.0f};
    opt.step();
    CHECK(w.value()(0) == doctest::Approx(1.0 - t * 0.01 / 1.001).epsilon(1e-6));
  }
}

TEST_CASE("adam: eps is outside the square root") {
  // One step from m = v = 0 with g = 0.5: m_hat = 0.5, v_hat = 0.25; denom = 0.5 + eps.
  // With eps inside the root the step would be 0.5 / sqrt(0.25 + 0.1) = 0.845 instead of
  // 0.5 / 0.6 = 0.8333.
  variable w(array<float>{0.0f}, true);
  optim::adam opt({{"w", &w}}, {.lr = 1.0, .eps = 0.1});
  w.grad() = array<float>{0.5f};
  opt.step();
  CHECK(w.value()(0) == doctest::Approx(-0.5 / 0.6).epsilon(1e-6));
}

TEST_CASE("adam and adamw match the PyTorch formulas over many steps") {
  SUBCASE("adam, defaults") { run_against_reference<optim::adam>(optim::adam_options{.lr = 0.01}, false, 15); }
  SUBCASE("adam, coupled weight decay") {
    run_against_reference<optim::adam>(optim::adam_options{.lr = 0.02, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6,
                                                           .weight_decay = 0.1},
                                       false, 15);
  }
  SUBCASE("adamw, decoupled weight decay") {
    run_against_reference<optim::adamw>(optim::adamw_options{.lr = 0.02, .weight_decay = 0.1}, true, 15);
  }
  SUBCASE("adamw, no weight decay equals adam") {
    run_against_reference<optim::adamw>(optim::adamw_options{.lr = 0.01, .weight_decay = 0}, false, 15);
  }
}

TEST_CASE("adamw decay is decoupled: with a zero gradient only the decay moves w") {
  // g = 0 keeps m = v = 0, so the Adam part is 0 / (0 + eps) = 0 and w = w * (1 - lr * wd).
  variable w(array<float>{2.0f}, true);
  optim::adamw opt({{"w", &w}}, {.lr = 0.1, .weight_decay = 0.5});
  w.grad() = array<float>{0.0f};
  opt.step();
  CHECK(w.value()(0) == doctest::Approx(2.0 * 0.95).epsilon(1e-6));
  // Adam's coupled decay instead feeds 0.5 * w into the moments: a full-size step of lr.
  variable u(array<float>{2.0f}, true);
  optim::adam coupled({{"u", &u}}, {.lr = 0.1, .weight_decay = 0.5});
  u.grad() = array<float>{0.0f};
  coupled.step();
  CHECK(u.value()(0) == doctest::Approx(2.0 - 0.1).epsilon(1e-5));
}

TEST_CASE("adam skips parameters without a gradient, each parameter counts its own steps") {
  variable a(array<float>{1.0f}, true);
  variable b(array<float>{1.0f}, true);
  optim::adam opt({{"a", &a}, {"b", &b}}, {.lr = 0.01, .eps = 1e-3});
  a.grad() = array<float>{1.0f};
  opt.step();
  opt.step();
  CHECK(b.value()(0) == 1.0f);
  b.grad() = array<float>{1.0f};
  opt.step();
  // b's first update has t = 1: bias correction makes it a full lr / (1 + eps) step.
  CHECK(b.value()(0) == doctest::Approx(1.0 - 0.01 / 1.001).epsilon(1e-6));
  CHECK(opt.step_count(0) == 3);
  CHECK(opt.step_count(1) == 1);
}

TEST_CASE("adam hyper-parameter errors") {
  variable w(array<float>{1.0f}, true);
  auto make = [&](const optim::adam_options& o) { optim::adam opt({{"w", &w}}, o); };
  auto make_w = [&](const optim::adamw_options& o) { optim::adamw opt({{"w", &w}}, o); };
  CHECK_THROWS_AS(make({.lr = -1e-3}), value_error);
  CHECK_THROWS_AS(make({.lr = INFINITY}), value_error);
  CHECK_THROWS_AS(make({.beta1 = 1.0}), value_error);
  CHECK_THROWS_AS(make({.beta2 = -0.5}), value_error);
  CHECK_THROWS_AS(make({.eps = -1e-8}), value_error);
  CHECK_THROWS_AS(make({.weight_decay = -0.1}), value_error);
  CHECK_THROWS_WITH_AS(make_w({.beta2 = 1.0}), doctest::Contains("adamw: beta2 must be in [0, 1)"), value_error);
  CHECK_THROWS_AS(make_w({.weight_decay = std::nan("")}), value_error);
  CHECK_NOTHROW(make({}));
  CHECK_NOTHROW(make_w({}));
}
