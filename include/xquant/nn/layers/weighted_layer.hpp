#pragma once
// weighted_layer<Q>: what conv2d<Q> and linear<Q> share.
//
// A weight [out, ...] named "weight", an optional bias [out] named "bias", and for a QAT
// bundle Q = bundle<W, A> the two quantizers: the weight fake-quant (child
// "weight_fake_quant", parameters from the current weights at every forward) and the
// output quantizer (child "activation_post_process", an observer freeze_observers()
// stops; absent when quantize_output is false, e.g. inside conv_bn, which quantizes after
// its BatchNorm). For no_quant both quantizers are empty types: no work, no children.

#include <optional>
#include <utility>

#include "xquant/nn/layers/exact_eval.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

template <layer_bundle Q>
class weighted_layer : public module, public qat_control {
 public:
  using quant_type = Q;

  variable& weight() { return weight_; }
  /// The bias, or nullptr for a layer without one.
  variable* bias() { return has_bias_ ? &bias_ : nullptr; }

  weight_quantizer_t<Q>& weight_quantizer() { return weight_fq_; }
  activation_quantizer_t<Q>& output_quantizer() { return output_fq_; }
  /// The weight's quantization parameters (what the next forward uses and conversion
  /// needs): from the current weights, or the learned step sizes for LSQ.
  quant_params weight_params() const
    requires is_quantized_v<Q>
  {
    return weight_fq_.params_for_weight(weight_.value());
  }
  /// The output quantizer's current parameters.
  quant_params output_params() const
    requires is_quantized_v<Q>
  {
    return output_fq_.params();
  }
  /// Whether the layer fake-quantizes its own output (false inside conv_bn).
  bool quantizes_output() const { return quantize_output_; }
  void set_observers_frozen(bool on) override { detail::freeze_quantizer<Q>(output_fq_, on); }
  void set_input_scale(float scale) override { input_scale_ = scale; }

 protected:
  /// `weight_shape` must already be validated by the layer (its first extent is `out`).
  weighted_layer(const shape_t& weight_shape, bool bias, bool quantize_output)
      : weight_fq_(weight_quant_channels<Q>(weight_shape[0])), has_bias_(bias), quantize_output_(quantize_output) {
    weight_ = variable(array<float>(weight_shape, 0.f));
    register_parameter("weight", weight_);
    if (bias) {
      bias_ = variable(array<float>(shape_t{weight_shape[0]}, 0.f));
      register_parameter("bias", bias_);
    }
    if constexpr (is_quantized_v<Q>) {
      register_module("weight_fake_quant", weight_fq_);
      if (quantize_output) register_module("activation_post_process", output_fq_);
    }
  }

  // no_quant: the raw weight. QAT: fake_quant<Q::weight>(weight), parameters from it.
  variable weight_for_forward() {
    if constexpr (is_quantized_v<Q>) {
      return weight_fq_(weight_);
    } else {
      return weight_;
    }
  }
  // no_quant: y unchanged. QAT: fake_quant<Q::activation>(y) (y is after the activation).
  variable quantize_output(variable y) {
    if constexpr (is_quantized_v<Q>) {
      if (quantize_output_) return output_fq_(y);
    }
    return y;
  }

  // The evaluation-mode bias on the int8 model's accumulator grid (exact_eval.hpp).
  array<double> accumulator_bias()
    requires is_quantized_v<Q>
  {
    return detail::accumulator_bias(bias(), weight_.shape()[0], input_scale_, weight_params());
  }

  variable weight_;
  variable bias_;
  std::optional<float> input_scale_;  ///< set by conversion (qat_control::set_input_scale)

 private:
  [[no_unique_address]] weight_quantizer_t<Q> weight_fq_;
  [[no_unique_address]] activation_quantizer_t<Q> output_fq_;
  bool has_bias_;
  bool quantize_output_;
};

}  // namespace xquant::nn
