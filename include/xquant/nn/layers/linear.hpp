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
#include "xquant/nn/layers/exact_eval.hpp"
#include "xquant/nn/layers/int8_spec.hpp"
#include "xquant/nn/layers/weighted_layer.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn {

struct linear_config {
  std::size_t in = 0, out = 0;  ///< features
  bool bias = true;
  activation act = activation::none;  ///< fused activation, applied before the output quantizer
  bool quantize_output = true;        ///< QAT: fake-quantize the output (ignored for no_quant)
};

template <layer_bundle Q = no_quant>
class linear : public weighted_layer<Q> {
  using base = weighted_layer<Q>;

 public:
  /// Allocates the parameters as zeros; call reset_parameters() (or the model's) to initialise.
  explicit linear(const linear_config& config)
      : base(weight_shape(config), config.bias, config.quantize_output), config_(config) {}
  linear(const linear_config& config, std::mt19937& rng) : linear(config) { reset_parameters(rng); }

  variable forward(const variable& x) override {
    const variable w = base::weight_for_forward();
    if constexpr (is_quantized_v<Q>) {
      if (detail::evaluates_in_float64(*this)) {  // exact_eval.hpp
        const variable y = detail::in_float64(x, w, base::accumulator_bias(), [](const auto& x64, const auto& w64, const auto* b64) {
          return functional::linear(x64, w64, b64);
        });
        return base::quantize_output(apply_activation(config_.act, y));
      }
    }
    variable y = functional::linear(x, w, base::bias());
    return base::quantize_output(apply_activation(config_.act, y));
  }

  void reset_parameters(std::mt19937& rng) override {
    init::kaiming_uniform(base::weight_.value(), rng);
    if (config_.bias) init::bias_uniform(base::bias_.value(), config_.in, rng);
  }

  std::optional<layer_spec> int8_spec() override {
    if constexpr (!is_quantized_v<Q>) {
      return detail::fp32_layer("linear");
    } else {
      if (!this->quantizes_output()) {
        return unquantized_spec{"linear with quantize_output = false has no output grid"};
      }
      weighted_spec s = detail::weighted_layer_spec<Q>(*this, base::weight_.value(),
                                                       base::bias() ? &base::bias()->value() : nullptr, config_.act);
      s.is_linear = true;
      s.in = config_.in;
      return s;
    }
  }

  const linear_config& config() const { return config_; }

 private:
  static shape_t weight_shape(const linear_config& config) {
    check<value_error>(config.in > 0 && config.out > 0, "linear layer: in and out must be positive");
    return {config.out, config.in};
  }

  linear_config config_;
};

}  // namespace xquant::nn
