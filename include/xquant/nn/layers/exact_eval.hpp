#pragma once
// Evaluation of a QAT layer's convolution or dense product with the int8 model's numbers.
//
// In evaluation mode a QAT layer computes sum_k x[k] * fq(w)[k] + b with x and fq(w) on
// quantization grids, and its output quantizer rounds the result to the output grid. The
// int8 model (runtime/lower.hpp) computes the same sum exactly in int32, but with the bias
// rounded to the accumulator grid s_in * s_w[o]. That rounding moves an output by up to
// s_in * s_w[o] / (2 s_out) steps (~1e-3 on the reference models): enough to put about one
// output in a thousand on the neighbouring grid point, which the following layers carry on.
// On resnet it left 20 % of the logits one step away from the fake-quant ones and the two
// models disagreed on the class of 0.2 % of the test images.
//
// So once conversion has told a layer its input scale (qat_control::set_input_scale), the
// evaluation forward adds the int8 model's bias, and it sums in float64, where every
// product of two grid values is exact (two float32 significands, 48 bits < 53) and the sum
// is correct to ~1e-16 relative: what is left is the rounding of the float32 result
// (~1e-5 of an output step) and of the requantization multiplier.
//
// Only when no gradient is recorded: the result is then a constant. Training, and
// evaluation with gradients, keep the float32 op and the unrounded bias.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <utility>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/quant/params.hpp"

namespace xquant::nn::detail {

/// True when a QAT layer evaluates with the int8 model's numbers: evaluation mode, no
/// gradient recorded.
inline bool evaluates_in_float64(const module& m) { return !m.is_training() && !autograd::grad_enabled(); }

/// The bias the int8 model adds to output channel o, as float64: round(b[o] / a[o]) * a[o]
/// with a[o] = s_in * s_w[o], the accumulator scale, computed as runtime::lower_weighted
/// computes it. Without an input scale (the layer was never converted): b itself. `bias`
/// may be null (zeros); `out` output channels, `weight` the weight quantizer's parameters
/// (one scale per channel, or one per tensor).
inline array<double> accumulator_bias(const variable* bias, std::size_t out, std::optional<float> input_scale,
                                      const quant_params& weight) {
  array<double> b(shape_t{out}, 0.0);
  if (bias == nullptr) return b;
  for (std::size_t o = 0; o < out; ++o) {
    const double v = bias->value().data()[o];
    if (!input_scale) {
      b.data()[o] = v;
      continue;
    }
    const float weight_scale = weight.is_per_tensor() ? weight.scale[0] : weight.scale[o];
    const double acc_scale = static_cast<double>(*input_scale) * weight_scale;
    b.data()[o] = std::nearbyint(v / acc_scale) * acc_scale;
  }
  return b;
}

/// op(x, w, bias) on float64 copies of x and w and the float64 `bias`, rounded back to
/// float32 once. op: callable as op(const basic_variable<double>& x,
/// const basic_variable<double>& w, const basic_variable<double>* bias) returning
/// basic_variable<double>.
template <class Op>
variable in_float64(const variable& x, const variable& w, array<double> bias, Op&& op) {
  const auto widen = [](const array<float>& a) {
    array<double> d(a.shape());
    std::copy(a.begin(), a.end(), d.begin());
    return autograd::basic_variable<double>(std::move(d));
  };
  const autograd::basic_variable<double> b(std::move(bias));
  const autograd::basic_variable<double> y = op(widen(x.value()), widen(w.value()), &b);
  array<float> narrow(y.value().shape());
  std::transform(y.value().begin(), y.value().end(), narrow.begin(), [](double v) { return static_cast<float>(v); });
  return variable(std::move(narrow));
}

}  // namespace xquant::nn::detail
