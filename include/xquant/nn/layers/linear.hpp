#pragma once
// linear<Q>: the fully connected layer (PyTorch's nn.Linear): y = x W^T + b.
//
// Parameters: "weight" [out, in] and, when config.bias, "bias" [out]. reset_parameters()
// is PyTorch's default init: kaiming_uniform(a = sqrt(5)) for the weight,
// U(-1/sqrt(in), 1/sqrt(in)) for the bias. The quantization (weight_fake_quant per output
// channel, fused activation config.act, then the output quantizer "activation_post_process")
// is that of conv2d<Q>: y = quantize_output(act(x W_q^T + b)).

#include <cstddef>
#include <random>
#include <type_traits>

#include "xquant/core/error.hpp"
#include "xquant/nn/functional/linear.hpp"
#include "xquant/nn/init.hpp"
#include "xquant/nn/layers/activation.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn {

struct linear_config {
  std::size_t in = 0, out = 0;  ///< features
  bool bias = true;
  activation act = activation::none;  ///< fused activation, applied before the output quantizer
  bool quantize_output = true;        ///< QAT: fake-quantize the output (ignored for no_quant)
};

template <layer_bundle Q = no_quant>
class linear : public module, public qat_control {
 public:
  using quant_type = Q;

  /// Allocates the parameters as zeros; call reset_parameters() (or the model's) to initialise.
  explicit linear(const linear_config& config)
      : config_(config), weight_fq_(weight_quant_channels<Q>(config.out)) {
    check<value_error>(config.in > 0 && config.out > 0, "linear layer: in and out must be positive");
    weight_ = variable(array<float>(shape_t{config.out, config.in}, 0.f));
    register_parameter("weight", weight_);
    if (config.bias) {
      bias_ = variable(array<float>(shape_t{config.out}, 0.f));
      register_parameter("bias", bias_);
    }
    if constexpr (is_quantized_v<Q>) {
      register_module("weight_fake_quant", weight_fq_);
      if (config.quantize_output) register_module("activation_post_process", output_fq_);
    }
  }
  linear(const linear_config& config, std::mt19937& rng) : linear(config) { reset_parameters(rng); }

  variable forward(const variable& x) override {
    variable y = functional::linear(x, weight_for_forward(), bias());
    return quantize_output(apply_activation(config_.act, y));
  }

  void reset_parameters(std::mt19937& rng) override {
    init::kaiming_uniform(weight_.value(), rng);
    if (config_.bias) init::bias_uniform(bias_.value(), config_.in, rng);
  }

  const linear_config& config() const { return config_; }
  variable& weight() { return weight_; }
  /// The bias, or nullptr for a layer without one.
  variable* bias() { return config_.bias ? &bias_ : nullptr; }

  // --- quantization (QAT bundles): as conv2d<Q> ----------------------------------------
  weight_quantizer_t<Q>& weight_quantizer() { return weight_fq_; }
  activation_quantizer_t<Q>& output_quantizer() { return output_fq_; }
  quant_params weight_params() const
    requires is_quantized_v<Q>
  {
    return weight_quantizer_t<Q>::params_for(weight_.value());
  }
  quant_params output_params() const
    requires is_quantized_v<Q>
  {
    return output_fq_.params();
  }
  void set_observers_frozen(bool on) override { detail::freeze_quantizer<Q>(output_fq_, on); }

 private:
  variable weight_for_forward() {
    if constexpr (is_quantized_v<Q>) {
      return weight_fq_(weight_);
    } else {
      return weight_;
    }
  }
  variable quantize_output(variable y) {
    if constexpr (is_quantized_v<Q>) {
      if (config_.quantize_output) return output_fq_(y);
    }
    return y;
  }

  linear_config config_;
  variable weight_;
  variable bias_;
  [[no_unique_address]] weight_quantizer_t<Q> weight_fq_;
  [[no_unique_address]] activation_quantizer_t<Q> output_fq_;
};

}  // namespace xquant::nn
