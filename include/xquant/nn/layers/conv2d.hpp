#pragma once
// conv2d<Q>: the 2-D convolution layer (PyTorch's nn.Conv2d, square kernel, zero padding).
//
// Parameters: "weight" [out, in / groups, kernel, kernel] and, when config.bias,
// "bias" [out] — PyTorch's state_dict names. reset_parameters() is PyTorch's default init:
// kaiming_uniform(a = sqrt(5)) for the weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias.
//
// Q is the layer's quantization bundle (nn/layers/qat.hpp). forward() is
//     y = quantize_output(act(conv2d(x, weight_for_forward(), bias)))
// no_quant (FP32): the raw weight, no quantizer. bundle<W, A> (QAT): the weight is
// fake-quantized with W from its current values at every forward (child
// "weight_fake_quant"), and the output, after the fused activation config.act, with A
// (child "activation_post_process", an observer that freeze_observers() stops), unless
// config.quantize_output is false (conv_bn quantizes after its BatchNorm instead).
// The parameter names are the same for every Q, so FP32 checkpoints load into QAT layers.

#include <cstddef>
#include <random>
#include <type_traits>

#include "xquant/core/error.hpp"
#include "xquant/nn/functional/conv2d.hpp"
#include "xquant/nn/init.hpp"
#include "xquant/nn/layers/activation.hpp"
#include "xquant/nn/layers/exact_eval.hpp"
#include "xquant/nn/layers/int8_spec.hpp"
#include "xquant/nn/layers/weighted_layer.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn {

struct conv2d_config {
  std::size_t in = 0, out = 0;  ///< channels
  std::size_t kernel = 1;       ///< square kernel
  std::size_t stride = 1;
  std::size_t padding = 0;      ///< zero padding on each side
  std::size_t groups = 1;       ///< groups == in == out: depthwise
  bool bias = true;
  activation act = activation::none;  ///< fused activation, applied before the output quantizer
  bool quantize_output = true;        ///< QAT: fake-quantize the output (ignored for no_quant)
};

template <layer_bundle Q = no_quant>
class conv2d : public weighted_layer<Q> {
  using base = weighted_layer<Q>;

 public:
  /// Allocates the parameters as zeros; call reset_parameters() (or the model's) to initialise.
  explicit conv2d(const conv2d_config& config)
      : base(weight_shape(config), config.bias, config.quantize_output), config_(config) {}
  conv2d(const conv2d_config& config, std::mt19937& rng) : conv2d(config) { reset_parameters(rng); }

  variable forward(const variable& x) override {
    const variable w = base::weight_for_forward();
    if constexpr (is_quantized_v<Q>) {
      if (detail::evaluates_in_float64(*this)) {  // exact_eval.hpp
        const variable y = detail::in_float64(x, w, base::accumulator_bias(), [&](const auto& x64, const auto& w64, const auto* b64) {
          return functional::conv2d(x64, w64, b64, options());
        });
        return base::quantize_output(apply_activation(config_.act, y));
      }
    }
    variable y = functional::conv2d(x, w, base::bias(), options());
    return base::quantize_output(apply_activation(config_.act, y));
  }

  void reset_parameters(std::mt19937& rng) override {
    init::kaiming_uniform(base::weight_.value(), rng);
    if (config_.bias) init::bias_uniform(base::bias_.value(), init::compute_fans(base::weight_.shape()).in, rng);
  }

  std::optional<layer_spec> int8_spec() override {
    if constexpr (!is_quantized_v<Q>) {
      return detail::fp32_layer("conv2d");
    } else {
      if (!this->quantizes_output()) {
        return unquantized_spec{"conv2d with quantize_output = false has no output grid (it is part of a larger "
                                "layer, or its output must be quantized by the next one)"};
      }
      weighted_spec s = detail::weighted_layer_spec<Q>(*this, base::weight_.value(),
                                                       base::bias() ? &base::bias()->value() : nullptr, config_.act);
      s.in = config_.in;
      s.kernel = config_.kernel;
      s.stride = config_.stride;
      s.padding = config_.padding;
      s.groups = config_.groups;
      return s;
    }
  }

  const conv2d_config& config() const { return config_; }
  functional::conv2d_options options() const {
    return {.stride_h = config_.stride, .stride_w = config_.stride, .pad_h = config_.padding,
            .pad_w = config_.padding, .groups = config_.groups};
  }

 private:
  static shape_t weight_shape(const conv2d_config& config) {
    check<value_error>(config.in > 0 && config.out > 0 && config.kernel > 0 && config.stride > 0 &&
                           config.groups > 0,
                       "conv2d layer: in, out, kernel, stride and groups must be positive");
    check<shape_error>(config.in % config.groups == 0 && config.out % config.groups == 0,
                       "conv2d layer: groups = ", config.groups, " must divide in (", config.in, ") and out (",
                       config.out, ")");
    return {config.out, config.in / config.groups, config.kernel, config.kernel};
  }

  conv2d_config config_;
};

}  // namespace xquant::nn
