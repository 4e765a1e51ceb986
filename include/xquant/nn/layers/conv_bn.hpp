#pragma once
// conv_bn<Q>: convolution (no bias) -> BatchNorm -> optional ReLU / ReLU6, as one module.
//
// This is the unit every reference model is built from, and the unit that quantization
// sees: QAT folds the BatchNorm into the convolution weights before weight fake
// quantization and puts the activation quantizer after the activation (never between
// them), and int8 conversion turns it into one convolution with a fused clamp. Keeping
// the three together in one module is what lets the trained graph be the graph that runs.
//
// Children: "conv" (conv2d<Q>, padding kernel/2 — "same" for odd kernels, no bias, no
// output quantizer of its own) and "bn"; for QAT also "activation_post_process" (the
// output quantizer) and, inside "conv", "weight_fake_quant". The parameter and BatchNorm
// buffer names are those of the FP32 module.
//
// ---- no_quant ----------------------------------------------------------------------
//
//   y = act(bn(conv(x, w)))                                   (unchanged FP32 behaviour)
//
// ---- QAT: BatchNorm folding during training ---------------------------------------------
//
// Krishnamoorthi 2018 §3.2, Jacob et al. 2018 fig. C.8, as PyTorch's
// torch.nn.intrinsic.qat.ConvBn2d (_forward_approximate). Per output channel o, with
// gamma, beta, mu, var the BatchNorm parameters and running statistics:
//
//   running_std[o] = sqrt(var[o] + eps)                       float32, a constant
//   s[o]           = gamma[o] / running_std[o]                gradient reaches gamma
//   w_fold         = w * s[o]                                 (scale_channels, axis 0)
//   z              = conv(x, fq_W(w_fold)) / s[o]             (divide_channels, axis 1)
//   y              = fq_A(act(bn(z)))
//
// bn(z) in training mode normalises with the batch statistics of z (and updates the
// running ones): the division by s[o] undoes the scaling, so z is the convolution with the
// (fake-quantized) unfolded weight and the batch statistics are those of the FP32 layer;
// the result is the FP32 conv+BN up to the weight quantization. With frozen BN
// (freeze_bn() / set_bn_frozen(true)) or in evaluation mode bn() uses the running
// statistics, and then exactly (in real arithmetic)
//
//   y = fq_A(act(conv(x, fq_W(w_fold)) + b_fold)),   b_fold[o] = beta[o] - mu[o] * s[o],
//
// the graph the int8 model runs: a convolution with the folded, quantized weight and a
// bias. Evaluation mode computes this form directly (folded_conv), so the fake-quant model
// rounds like the int8 model; frozen-BN training keeps the division, whose gradient
// reaches gamma through both paths. folded_weight(), folded_bias(), weight_params() and
// output_params() give those numbers to conversion. A BatchNorm weight gamma exactly 0
// (s = 0) is a value_error.

#include <cmath>
#include <cstddef>
#include <optional>
#include <random>

#include "xquant/nn/functional/batch_norm.hpp"
#include "xquant/nn/functional/channel_scale.hpp"
#include "xquant/nn/functional/conv2d.hpp"
#include "xquant/nn/layers/activation.hpp"
#include "xquant/nn/layers/exact_eval.hpp"
#include "xquant/nn/layers/batch_norm.hpp"
#include "xquant/nn/layers/conv2d.hpp"
#include "xquant/nn/layers/int8_spec.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

struct conv_bn_config {
  std::size_t in = 0, out = 0, kernel = 1, stride = 1, groups = 1;
  activation act = activation::none;
};

template <layer_bundle Q = no_quant>
class conv_bn : public module, public qat_control {
 public:
  explicit conv_bn(const conv_bn_config& c)
      : conv_({.in = c.in, .out = c.out, .kernel = c.kernel, .stride = c.stride, .padding = c.kernel / 2,
               .groups = c.groups, .bias = false, .quantize_output = false}),
        bn_(c.out),
        act_(c.act) {
    register_module("conv", conv_);
    register_module("bn", bn_);
    if constexpr (is_quantized_v<Q>) register_module("activation_post_process", output_fq_);
  }

  variable forward(const variable& x) override {
    if constexpr (!is_quantized_v<Q>) {
      if (!bn_frozen_) return apply_activation(act_, bn_(conv_(x)));
      return apply_activation(act_, batch_norm(conv_(x), false));
    } else {
      if (!is_training()) return output_fq_(apply_activation(act_, folded_conv(x)));
      const variable s = bn_scale();
      const variable w_fold = functional::scale_channels(conv_.weight(), s, 0);
      const variable z = functional::divide_channels(
          functional::conv2d(x, conv_.weight_quantizer()(w_fold), nullptr, conv_.options()), s, 1);
      return output_fq_(apply_activation(act_, batch_norm(z, is_training() && !bn_frozen_)));
    }
  }

  /// The folded convolution on its integer grid (eval-mode arithmetic; trace.hpp).
  std::optional<layer_spec> int8_spec() override {
    if constexpr (!is_quantized_v<Q>) {
      return detail::fp32_layer("conv_bn");
    } else {
      const array<float> bias = folded_bias();
      weighted_spec s = detail::weighted_layer_spec<Q>(*this, folded_weight(), &bias, act_);
      const conv2d_config& c = conv_.config();
      s.in = c.in;
      s.kernel = c.kernel;
      s.stride = c.stride;
      s.padding = c.padding;
      s.groups = c.groups;
      return s;
    }
  }

  conv2d<Q>& conv() { return conv_; }
  batch_norm2d& bn() { return bn_; }
  activation act() const { return act_; }

  /// BatchNorm uses (and no longer updates) its running statistics, also in training mode.
  void freeze_bn(bool on = true) { bn_frozen_ = on; }
  bool bn_frozen() const { return bn_frozen_; }
  void set_bn_frozen(bool on) override { freeze_bn(on); }
  void set_observers_frozen(bool on) override { detail::freeze_quantizer<Q>(output_fq_, on); }
  void set_input_scale(float scale) override { input_scale_ = scale; }

  // --- what conversion needs (all from the current parameters and running statistics) ---

  /// s[o] = gamma[o] / sqrt(running_var[o] + eps), float32 as in forward().
  array<float> fold_factors() {
    const variable s = bn_scale_no_grad();
    return s.value();
  }
  /// w_fold = w * s[o], bit-identical to the weight forward() fake-quantizes.
  array<float> folded_weight() {
    autograd::no_grad_guard no_grad;
    return functional::scale_channels(conv_.weight(), bn_scale_no_grad(), 0).value();
  }
  /// b_fold[o] = beta[o] - running_mean[o] * s[o].
  array<float> folded_bias() {
    const array<float> s = fold_factors();
    array<float> b(shape_t{s.size()});
    for (std::size_t o = 0; o < s.size(); ++o) {
      b.data()[o] = bn_.bias().value().data()[o] - bn_.running_mean().data()[o] * s.data()[o];
    }
    return b;
  }
  /// Quantization parameters of the folded weight (per channel for per_axis<0>; the
  /// learned step sizes for LSQ).
  quant_params weight_params()
    requires is_quantized_v<Q>
  {
    return conv_.weight_quantizer().params_for_weight(folded_weight());
  }
  /// The output quantizer's current parameters (after the activation).
  quant_params output_params() const
    requires is_quantized_v<Q>
  {
    return output_fq_.params();
  }
  activation_quantizer_t<Q>& output_quantizer() { return output_fq_; }
  weight_quantizer_t<Q>& weight_quantizer() { return conv_.weight_quantizer(); }

 private:
  /// Evaluation: conv(x, fq_W(w_fold)) + b_fold, the int8 model's arithmetic (without
  /// gradients: in float64 with the int8 model's bias, exact_eval.hpp). Equal in exact
  /// arithmetic to dividing by s and applying BN with running statistics, which rounds
  /// twice more in float32.
  variable folded_conv(const variable& x) {
    const variable w_fold(folded_weight());
    const variable b_fold(folded_bias());
    const variable w_quantized = conv_.weight_quantizer()(w_fold);
    if (detail::evaluates_in_float64(*this)) {  // exact_eval.hpp
      const quant_params wp = conv_.weight_quantizer().params_for_weight(w_fold.value());
      array<double> b = detail::accumulator_bias(&b_fold, w_fold.shape()[0], input_scale_, wp);
      return detail::in_float64(x, w_quantized, std::move(b), [&](const auto& x64, const auto& w64, const auto* b64) {
        return functional::conv2d(x64, w64, b64, conv_.options());
      });
    }
    return functional::conv2d(x, w_quantized, &b_fold, conv_.options());
  }

  variable batch_norm(const variable& z, bool training) {
    return functional::batch_norm(z, bn_.weight(), bn_.bias(), bn_.running_mean(), bn_.running_var(), training,
                                  bn_.momentum(), bn_.eps());
  }

  /// gamma / running_std as a variable whose gradient reaches gamma.
  variable bn_scale() {
    const array<float>& var = bn_.running_var();
    array<float> running_std(shape_t{var.size()});
    const float eps = static_cast<float>(bn_.eps());
    for (std::size_t o = 0; o < var.size(); ++o) running_std.data()[o] = std::sqrt(var.data()[o] + eps);
    const variable s = functional::divide_channels(bn_.weight(), variable(std::move(running_std)), 0);
    for (float f : s.value()) {
      check<value_error>(f != 0.0f && std::isfinite(f), "conv_bn: BatchNorm folding needs gamma / running_std "
                         "finite and non-zero, got ", f);
    }
    return s;
  }
  variable bn_scale_no_grad() {
    autograd::no_grad_guard no_grad;
    return bn_scale();
  }

  conv2d<Q> conv_;
  batch_norm2d bn_;
  activation act_;
  bool bn_frozen_ = false;
  std::optional<float> input_scale_;  ///< set by conversion (qat_control::set_input_scale)
  [[no_unique_address]] activation_quantizer_t<Q> output_fq_;
};

}  // namespace xquant::nn
