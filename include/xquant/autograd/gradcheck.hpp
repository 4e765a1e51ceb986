#pragma once
// gradcheck: compares an op's analytic gradient with central finite differences, in
// float64.
//
// The output is reduced to a scalar with fixed random weights r (L = sum(f(x) * r)),
// so every element of the output's gradient is exercised, not only their sum. For each
// input element x_i: numeric = (L(x_i + eps) - L(x_i - eps)) / (2 eps), which has error
// O(eps^2) for smooth f. Ops with kinks (ReLU, max pool, clamp) are smooth except on a
// measure-zero set; tests keep inputs away from the kinks by more than eps.

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "xquant/autograd/graph.hpp"
#include "xquant/autograd/variable.hpp"

namespace xquant::autograd {

struct gradcheck_result {
  bool ok = true;
  double max_abs_error = 0;
  std::string first_failure;  ///< "input 1, element 17: analytic 0.3 vs numeric 0.31"
};

using function64 = std::function<basic_variable<double>(const std::vector<basic_variable<double>>&)>;

inline gradcheck_result gradcheck(const function64& f, std::vector<basic_variable<double>> inputs,
                                  double eps = 1e-6, double atol = 1e-6, double rtol = 1e-5,
                                  unsigned seed = 1) {
  for (auto& in : inputs) {
    in.set_requires_grad(true);
    in.zero_grad();
  }
  basic_variable<double> out = f(inputs);
  array<double> weights(out.value().shape());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (auto& w : weights) w = dist(rng);
  backward(out, &weights);

  auto loss = [&]() {
    no_grad_guard guard;
    const basic_variable<double> y = f(inputs);
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += y.value().data()[i] * weights.data()[i];
    return l;
  };

  gradcheck_result result;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    auto& x = inputs[k].value();
    const bool has_grad = inputs[k].grad().size() == x.size();
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double saved = x.data()[i];
      x.data()[i] = saved + eps;
      const double up = loss();
      x.data()[i] = saved - eps;
      const double down = loss();
      x.data()[i] = saved;
      const double numeric = (up - down) / (2 * eps);
      const double analytic = has_grad ? inputs[k].grad().data()[i] : 0.0;
      const double err = std::abs(analytic - numeric);
      result.max_abs_error = std::max(result.max_abs_error, err);
      if (err > atol + rtol * std::abs(numeric) && result.ok) {
        result.ok = false;
        result.first_failure = "input " + std::to_string(k) + ", element " + std::to_string(i) + ": analytic " +
                               std::to_string(analytic) + " vs numeric " + std::to_string(numeric);
      }
    }
  }
  return result;
}

/// Whether f's backward adds to gradients that already exist: running forward and backward
/// twice without zero_grad must give twice the gradient of one run (exactly when one
/// contribution reaches each input; up to rounding, 1e-12 relative, when several are
/// summed in another order). The first run finds no gradients (ops may then store, see
/// input_grad_target), the second adds to them; an op that stores where it must add, or
/// adds to an uninitialised buffer, fails here. f must be deterministic. `where` receives
/// the first difference.
inline bool gradient_accumulates(const function64& f, std::vector<basic_variable<double>> inputs,
                                 std::string* where = nullptr, unsigned seed = 1) {
  for (auto& in : inputs) {
    in.set_requires_grad(true);
    in.zero_grad();
  }
  std::vector<array<double>> once;
  for (int run = 0; run < 2; ++run) {
    basic_variable<double> out = f(inputs);
    array<double> weights(out.value().shape());
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    for (auto& w : weights) w = dist(rng);
    backward(out, &weights);
    if (run == 0)
      for (auto& in : inputs) once.push_back(in.grad());
  }
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].has_grad()) continue;  // no gradient reaches this input
    const array<double>& twice = inputs[k].grad();
    for (std::size_t i = 0; i < twice.size(); ++i) {
      const double expected = 2 * once[k].data()[i];
      if (!(std::abs(twice.data()[i] - expected) <= 1e-12 * std::abs(expected))) {
        if (where) {
          *where = "input " + std::to_string(k) + ", element " + std::to_string(i) + ": " +
                   std::to_string(twice.data()[i]) + " after two runs, " + std::to_string(once[k].data()[i]) +
                   " after one";
        }
        return false;
      }
    }
  }
  return true;
}

}  // namespace xquant::autograd
