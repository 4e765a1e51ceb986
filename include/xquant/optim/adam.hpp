#pragma once
// Adam and AdamW, exactly torch.optim.Adam's and torch.optim.AdamW's update rules
// (amsgrad = false).
//
// For each parameter w with gradient g, learning rate lr, betas (b1, b2), eps, weight
// decay lambda, moment estimates m, v (zeros at first) and the parameter's update count
// t (1 on its first update):
//
//   adamw only:  w <- w * (1 - lr * lambda)       decoupled decay, before the update
//   adam only:   g <- g + lambda * w              coupled L2 (p.grad itself unchanged)
//   m <- b1 * m + (1 - b1) * g
//   v <- b2 * v + (1 - b2) * g * g
//   step_size <- lr / (1 - b1^t)                  bias corrections, in double
//   denom     <- sqrt(v) / sqrt(1 - b2^t) + eps   eps outside the square root
//   w <- w - step_size * (m / denom)
//
// Per-element arithmetic is float32; the bias corrections are computed in double once
// per parameter and step, as PyTorch does for float32 parameters on the CPU.
// State: "<param>.exp_avg" (m), "<param>.exp_avg_sq" (v), "<param>.step" (t).

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/optim/optimizer.hpp"

namespace xquant::optim {

struct adam_options {
  double lr = 1e-3;
  double beta1 = 0.9;       ///< in [0, 1)
  double beta2 = 0.999;     ///< in [0, 1)
  double eps = 1e-8;        ///< >= 0
  double weight_decay = 0;  ///< coupled L2 (Adam), >= 0
};

struct adamw_options {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  ///< decoupled (AdamW), >= 0; PyTorch's default
};

namespace detail {

/// The shared body of adam and adamw; `Decoupled` selects AdamW's weight decay.
template <bool Decoupled>
class adam_impl : public optimizer {
 public:
  adam_impl(std::vector<nn::parameter_ref> params, double lr, double beta1, double beta2, double eps,
            double weight_decay)
      : optimizer(std::move(params), lr), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(weight_decay) {
    check_unit_interval(beta1, Decoupled ? "adamw: beta1" : "adam: beta1");
    check_unit_interval(beta2, Decoupled ? "adamw: beta2" : "adam: beta2");
    check_non_negative(eps, Decoupled ? "adamw: eps" : "adam: eps");
    check_non_negative(weight_decay, Decoupled ? "adamw: weight_decay" : "adam: weight_decay");
    exp_avg_ = add_slot("exp_avg");
    exp_avg_sq_ = add_slot("exp_avg_sq");
  }

  std::string_view type() const override { return Decoupled ? "adamw" : "adam"; }

  void step() override {
    autograd::no_grad_guard guard;
    const float b1 = static_cast<float>(beta1_);
    const float b2 = static_cast<float>(beta2_);
    const float one_minus_b1 = static_cast<float>(1.0 - beta1_);
    const float one_minus_b2 = static_cast<float>(1.0 - beta2_);
    const float eps = static_cast<float>(eps_);
    const float lambda = static_cast<float>(weight_decay_);
    const float decay = static_cast<float>(1.0 - lr_ * weight_decay_);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      autograd::variable& p = *params_[i].var;
      if (!p.has_grad()) continue;
      check_grad(i);
      float* w = p.value().data();
      const float* grad = p.grad().data();
      float* m = slot(exp_avg_, i).data();
      float* v = slot(exp_avg_sq_, i).data();
      const std::size_t n = p.size();

      const double t = static_cast<double>(++steps_[i]);
      const double bias_correction1 = 1.0 - std::pow(beta1_, t);
      const double bias_correction2 = 1.0 - std::pow(beta2_, t);
      const float step_size = static_cast<float>(lr_ / bias_correction1);
      const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));

      if (Decoupled && weight_decay_ != 0) {
        for (std::size_t j = 0; j < n; ++j) w[j] *= decay;
      }
      for (std::size_t j = 0; j < n; ++j) {
        float g = grad[j];
        if (!Decoupled && lambda != 0) g += lambda * w[j];
        m[j] = b1 * m[j] + one_minus_b1 * g;
        v[j] = b2 * v[j] + one_minus_b2 * g * g;
        const float denom = std::sqrt(v[j]) / bias_correction2_sqrt + eps;
        w[j] -= step_size * (m[j] / denom);
      }
    }
  }

  std::vector<std::pair<std::string, double>> hyper_parameters() const override {
    return {{"lr", lr_}, {"beta1", beta1_}, {"beta2", beta2_}, {"eps", eps_}, {"weight_decay", weight_decay_}};
  }

  double beta1() const { return beta1_; }
  double beta2() const { return beta2_; }
  double eps() const { return eps_; }
  double weight_decay() const { return weight_decay_; }

 private:
  double beta1_, beta2_, eps_, weight_decay_;
  std::size_t exp_avg_ = 0, exp_avg_sq_ = 0;
};

}  // namespace detail

/// Adam (Kingma & Ba 2015) with PyTorch's coupled L2 weight decay.
class adam final : public detail::adam_impl<false> {
 public:
  adam(std::vector<nn::parameter_ref> params, const adam_options& o)
      : adam_impl(std::move(params), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay) {}
};

/// AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.
class adamw final : public detail::adam_impl<true> {
 public:
  adamw(std::vector<nn::parameter_ref> params, const adamw_options& o)
      : adam_impl(std::move(params), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay) {}
};

}  // namespace xquant::optim
