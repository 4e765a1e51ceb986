#pragma once
// Building blocks of the layers' int8_spec() (trace.hpp): where a layer template applies
// its quantization policies to produce plain numbers for conversion.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/nn/trace.hpp"
#include "xquant/quant/params.hpp"
#include "xquant/quant/quantize.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn::detail {

/// The grid of a per-tensor activation quantizer of Scheme with parameters p.
template <quant_scheme Scheme>
activation_grid grid_of(const quant_params& p) {
  static_assert(!Scheme::is_per_axis, "xquant: int8 conversion needs per-tensor activation quantizers");
  activation_grid g;
  g.scale = p.scale.at(0);
  g.zero_point = p.zero_point.at(0);
  g.qmin = Scheme::qmin;
  g.qmax = Scheme::qmax;
  return g;
}

/// The weight of a conv / dense layer on its integer grid (Scheme W, parameters p from the
/// layer's weight quantizer): exactly the integers the QAT forward's fake quantization
/// rounded to. `w` is [out, ...]; bias may be empty (zeros).
template <quant_scheme W>
weighted_spec weighted_spec_of(const array<float>& w, const quant_params& p, const array<float>* bias) {
  static_assert(W::is_symmetric, "xquant: int8 conversion needs symmetric weights (zero point 0)");
  weighted_spec s;
  s.out = w.shape()[0];
  const array<typename W::value_type> q = quantize<W>(w, p);
  s.weight.assign(q.begin(), q.end());
  s.weight_scale.resize(s.out);
  for (std::size_t o = 0; o < s.out; ++o) s.weight_scale[o] = p.is_per_tensor() ? p.scale[0] : p.scale[o];
  s.weight_qmin = W::qmin;
  s.weight_qmax = W::qmax;
  s.bias.assign(s.out, 0.0f);
  if (bias != nullptr) s.bias.assign(bias->begin(), bias->end());
  return s;
}

/// The spec of a conv / dense layer of bundle Q: `Layer` has weight_params(),
/// output_params(); `w` is the (folded) float weight, `bias` may be null.
template <class Q, class Layer>
weighted_spec weighted_layer_spec(Layer& layer, const array<float>& w, const array<float>* bias, activation act) {
  weighted_spec s = weighted_spec_of<typename Q::weight>(w, layer.weight_params(), bias);
  s.act = act;
  s.output = grid_of<typename Q::activation>(layer.output_params());
  return s;
}

/// The spec of a max / average pool with these options (square windows only).
template <class Options>
layer_spec pool_spec_of(pool_spec::kind op, const Options& o) {
  if (o.kernel_h != o.kernel_w || o.stride_h != o.stride_w || o.pad_h != o.pad_w) {
    return unquantized_spec{"pooling with a non-square window, stride or padding"};
  }
  pool_spec s;
  s.op = op;
  s.kernel = o.kernel_h;
  s.stride = o.stride_h;
  s.padding = o.pad_h;
  return s;
}

/// Why a no_quant (FP32) layer has no integer form.
inline unquantized_spec fp32_layer(const char* layer) {
  return {std::string(layer) + " has the bundle no_quant (FP32); build the model with a QAT bundle such as "
          "w8a8, then train (QAT) or calibrate (PTQ) it before int8 conversion"};
}

}  // namespace xquant::nn::detail
