#pragma once
// linear<Q>: the fully connected layer (PyTorch's nn.Linear): y = x W^T + b.
//
// Parameters: "weight" [out, in] and, when config.bias, "bias" [out]. reset_parameters()
// is PyTorch's default init: kaiming_uniform(a = sqrt(5)) for the weight,
// U(-1/sqrt(in), 1/sqrt(in)) for the bias. The quantization hooks are those of conv2d<Q>.

#include <cstddef>
#include <random>
#include <type_traits>

#include "xquant/core/error.hpp"
#include "xquant/nn/functional/linear.hpp"
#include "xquant/nn/init.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn {

struct linear_config {
  std::size_t in = 0, out = 0;  ///< features
  bool bias = true;
};

template <class Q = no_quant>
class linear : public module {
  static_assert(std::is_same_v<Q, no_quant>,
                "xquant: fake quantization in layers arrives with quantization-aware training");

 public:
  using quant_type = Q;

  /// Allocates the parameters as zeros; call reset_parameters() (or the model's) to initialise.
  explicit linear(const linear_config& config) : config_(config) {
    check<value_error>(config.in > 0 && config.out > 0, "linear layer: in and out must be positive");
    weight_ = variable(array<float>(shape_t{config.out, config.in}, 0.f));
    register_parameter("weight", weight_);
    if (config.bias) {
      bias_ = variable(array<float>(shape_t{config.out}, 0.f));
      register_parameter("bias", bias_);
    }
  }
  linear(const linear_config& config, std::mt19937& rng) : linear(config) { reset_parameters(rng); }

  variable forward(const variable& x) override {
    variable y = functional::linear(x, weight_for_forward(), bias());
    return quantize_output(std::move(y));
  }

  void reset_parameters(std::mt19937& rng) override {
    init::kaiming_uniform(weight_.value(), rng);
    if (config_.bias) init::bias_uniform(bias_.value(), config_.in, rng);
  }

  const linear_config& config() const { return config_; }
  variable& weight() { return weight_; }
  /// The bias, or nullptr for a layer without one.
  variable* bias() { return config_.bias ? &bias_ : nullptr; }

 private:
  // --- quantization hooks -------------------------------------------------------------
  // no_quant: the raw weight. QAT: fake_quant<typename Q::weight>(weight_).
  variable weight_for_forward() const { return weight_; }
  // no_quant: the output unchanged. QAT: fake_quant<typename Q::activation>(y).
  variable quantize_output(variable y) const { return y; }

  linear_config config_;
  variable weight_;
  variable bias_;
};

}  // namespace xquant::nn
