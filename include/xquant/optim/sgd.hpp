#pragma once
// Stochastic gradient descent with momentum, exactly torch.optim.SGD's update rule.
//
// For each parameter w with gradient g, with learning rate lr, momentum mu, dampening
// tau, weight decay lambda (all from the options) and the momentum buffer b:
//
//   g <- g + lambda * w                   weight decay as coupled L2 (the gradient of
//                                         lambda/2 * |w|^2); p.grad itself is not changed
//   if mu != 0:
//     b <- g                              on the parameter's first update
//     b <- mu * b + (1 - tau) * g         afterwards
//     g <- g + mu * b    (nesterov)   or   g <- b
//   w <- w - lr * g
//
// The arithmetic is float32 per element, with the hyper-parameters rounded to float
// once per step, as PyTorch computes on float32 tensors. The first-update rule
// (b = g, not (1 - tau) * g) is PyTorch's; it makes dampening affect only later steps.
// State: "<param>.momentum_buffer" (when momentum != 0) and "<param>.step".

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/optim/optimizer.hpp"

namespace xquant::optim {

struct sgd_options {
  double lr = 1e-3;
  double momentum = 0;      ///< in [0, 1)
  double dampening = 0;     ///< in [0, 1]
  double weight_decay = 0;  ///< coupled L2, >= 0
  bool nesterov = false;    ///< needs momentum > 0 and dampening == 0
};

class sgd final : public optimizer {
 public:
  /// Throws value_error for an out-of-domain hyper-parameter or a bad parameter list.
  sgd(std::vector<nn::parameter_ref> params, const sgd_options& options)
      : optimizer(std::move(params), options.lr), options_(validated(options)) {
    if (options_.momentum != 0) momentum_slot_ = add_slot("momentum_buffer");
  }

  std::string_view type() const override { return "sgd"; }

  void step() override {
    autograd::no_grad_guard guard;
    const float lr = static_cast<float>(lr_);
    const float mu = static_cast<float>(options_.momentum);
    const float one_minus_tau = static_cast<float>(1.0 - options_.dampening);
    const float lambda = static_cast<float>(options_.weight_decay);
    const bool use_momentum = options_.momentum != 0;
    const bool nesterov = options_.nesterov;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      autograd::variable& p = *params_[i].var;
      if (!p.has_grad()) continue;
      check_grad(i);
      float* w = p.value().data();
      const float* grad = p.grad().data();
      const std::size_t n = p.size();
      float* b = use_momentum ? slot(momentum_slot_, i).data() : nullptr;
      const bool first = steps_[i] == 0;
      for (std::size_t j = 0; j < n; ++j) {
        float g = grad[j];
        if (lambda != 0) g += lambda * w[j];
        if (use_momentum) {
          const float buf = first ? g : mu * b[j] + one_minus_tau * g;
          b[j] = buf;
          g = nesterov ? g + mu * buf : buf;
        }
        w[j] -= lr * g;
      }
      ++steps_[i];
    }
  }

  std::vector<std::pair<std::string, double>> hyper_parameters() const override {
    return {{"lr", lr_},
            {"momentum", options_.momentum},
            {"dampening", options_.dampening},
            {"weight_decay", options_.weight_decay},
            {"nesterov", options_.nesterov ? 1.0 : 0.0}};
  }

  const sgd_options& options() const { return options_; }

 private:
  static sgd_options validated(const sgd_options& o) {
    detail::check_non_negative(o.lr, "sgd: learning rate");
    detail::check_unit_interval(o.momentum, "sgd: momentum");
    check(o.dampening >= 0 && o.dampening <= 1, "sgd: dampening must be in [0, 1], got ", o.dampening);
    detail::check_non_negative(o.weight_decay, "sgd: weight_decay");
    check(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
          "sgd: nesterov momentum needs momentum > 0 and dampening 0, got momentum ", o.momentum,
          " and dampening ", o.dampening);
    return o;
  }

  sgd_options options_;
  std::size_t momentum_slot_ = 0;
};

}  // namespace xquant::optim
