#pragma once
// conv2d<Q>: the 2-D convolution layer (PyTorch's nn.Conv2d, square kernel, zero padding).
//
// Parameters: "weight" [out, in / groups, kernel, kernel] and, when config.bias,
// "bias" [out] — PyTorch's state_dict names. reset_parameters() is PyTorch's default init:
// kaiming_uniform(a = sqrt(5)) for the weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias.
//
// Q is the layer's quantization bundle. forward() is written as
//     y = quantize_output(conv2d(x, weight_for_forward(), bias))
// so quantization-aware training only fills in the two hooks below (fake quantization of
// the weight with Q::weight, of the output with Q::activation); the layer stays as is.

#include <cstddef>
#include <random>
#include <type_traits>

#include "xquant/core/error.hpp"
#include "xquant/nn/functional/conv2d.hpp"
#include "xquant/nn/init.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn {

struct conv2d_config {
  std::size_t in = 0, out = 0;  ///< channels
  std::size_t kernel = 1;       ///< square kernel
  std::size_t stride = 1;
  std::size_t padding = 0;      ///< zero padding on each side
  std::size_t groups = 1;       ///< groups == in == out: depthwise
  bool bias = true;
};

template <class Q = no_quant>
class conv2d : public module {
  static_assert(std::is_same_v<Q, no_quant>,
                "xquant: fake quantization in layers arrives with quantization-aware training");

 public:
  using quant_type = Q;

  /// Allocates the parameters as zeros; call reset_parameters() (or the model's) to initialise.
  explicit conv2d(const conv2d_config& config) : config_(config) {
    check<value_error>(config.in > 0 && config.out > 0 && config.kernel > 0 && config.stride > 0 &&
                           config.groups > 0,
                       "conv2d layer: in, out, kernel, stride and groups must be positive");
    check<shape_error>(config.in % config.groups == 0 && config.out % config.groups == 0,
                       "conv2d layer: groups = ", config.groups, " must divide in (", config.in, ") and out (",
                       config.out, ")");
    weight_ = variable(array<float>(shape_t{config.out, config.in / config.groups, config.kernel, config.kernel}, 0.f));
    register_parameter("weight", weight_);
    if (config.bias) {
      bias_ = variable(array<float>(shape_t{config.out}, 0.f));
      register_parameter("bias", bias_);
    }
  }
  conv2d(const conv2d_config& config, std::mt19937& rng) : conv2d(config) { reset_parameters(rng); }

  variable forward(const variable& x) override {
    variable y = functional::conv2d(x, weight_for_forward(), bias(), options());
    return quantize_output(std::move(y));
  }

  void reset_parameters(std::mt19937& rng) override {
    init::kaiming_uniform(weight_.value(), rng);
    if (config_.bias) init::bias_uniform(bias_.value(), init::compute_fans(weight_.shape()).in, rng);
  }

  const conv2d_config& config() const { return config_; }
  functional::conv2d_options options() const {
    return {.stride_h = config_.stride, .stride_w = config_.stride, .pad_h = config_.padding,
            .pad_w = config_.padding, .groups = config_.groups};
  }
  variable& weight() { return weight_; }
  /// The bias, or nullptr for a layer without one.
  variable* bias() { return config_.bias ? &bias_ : nullptr; }

 private:
  // --- quantization hooks -------------------------------------------------------------
  // no_quant: the raw weight. QAT: fake_quant<typename Q::weight>(weight_).
  variable weight_for_forward() const { return weight_; }
  // no_quant: the output unchanged. QAT: fake_quant<typename Q::activation>(y), unless a
  // fused activation follows (the quantizer then sits after it).
  variable quantize_output(variable y) const { return y; }

  conv2d_config config_;
  variable weight_;
  variable bias_;
};

}  // namespace xquant::nn
