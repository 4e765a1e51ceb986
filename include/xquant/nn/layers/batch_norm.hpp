#pragma once
// batch_norm2d: batch normalization of NCHW activations (PyTorch's nn.BatchNorm2d,
// affine, tracking running statistics).
//
// Parameters "weight" (gamma) and "bias" (beta), buffers "running_mean" and "running_var",
// all [C]. Training mode (module::train()) normalises with the batch statistics and
// updates the running ones; evaluation mode (eval()) uses the running statistics. See
// functional/batch_norm.hpp for the formulas. reset_parameters(): weight 1, bias 0,
// running_mean 0, running_var 1 (the rng is not used).

#include <cstddef>
#include <random>

#include "xquant/core/error.hpp"
#include "xquant/nn/functional/batch_norm.hpp"
#include "xquant/nn/init.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

class batch_norm2d : public module {
 public:
  explicit batch_norm2d(std::size_t num_features, double eps = 1e-5, double momentum = 0.1)
      : eps_(eps), momentum_(momentum) {
    check<value_error>(num_features > 0, "batch_norm2d: num_features must be positive");
    weight_ = variable(array<float>(shape_t{num_features}, 1.f));
    bias_ = variable(array<float>(shape_t{num_features}, 0.f));
    running_mean_ = array<float>(shape_t{num_features}, 0.f);
    running_var_ = array<float>(shape_t{num_features}, 1.f);
    register_parameter("weight", weight_);
    register_parameter("bias", bias_);
    register_buffer("running_mean", running_mean_);
    register_buffer("running_var", running_var_);
  }

  variable forward(const variable& x) override {
    check<shape_error>(x.value().dimension() == 4, "batch_norm2d: input must be [N, C, H, W], got shape ",
                       shape_string(x.shape()));
    return functional::batch_norm(x, weight_, bias_, running_mean_, running_var_, is_training(), momentum_, eps_);
  }

  void reset_parameters(std::mt19937&) override {
    init::ones(weight_.value());
    init::zeros(bias_.value());
    reset_running_stats();
  }
  void reset_running_stats() {
    init::zeros(running_mean_);
    init::ones(running_var_);
  }

  variable& weight() { return weight_; }
  variable& bias() { return bias_; }
  array<float>& running_mean() { return running_mean_; }
  array<float>& running_var() { return running_var_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }

 private:
  double eps_, momentum_;
  variable weight_, bias_;
  array<float> running_mean_, running_var_;
};

}  // namespace xquant::nn
