#pragma once
// Lowering: a traced layer's spec + the grid of its input -> the plain integer arguments
// of the int8 kernels. This is the one place where quantization parameters become kernel
// arguments (the layer templates already applied their policies when they made the spec).
//
// Activations are stored as uint8 in the engine. An 8-bit signed grid [-128, 127] is the
// same arithmetic shifted by +128 (value, zero point and clamp bounds all move together),
// so a signed activation policy runs the same uint8 kernels exactly (stored_grid).
//
// A convolution / dense layer computes, per output channel o (Jacob et al. 2018, eq. 7):
//
//   acc[o]  = bias_q[o] + sum_k x[k] * w[o][k] - z_in * sum_k w[o][k]
//   y[o]    = clamp(z_out + round(acc[o] * M[o]), lo, hi),   M[o] = s_in * s_w[o] / s_out
//
// with bias_q[o] = round(bias[o] / (s_in * s_w[o])) and the input zero-point term folded
// into the int32 bias, so the kernels multiply raw uint8 inputs (a padded tap holds z_in and
// contributes nothing). The fused activation is the clamp: ReLU lo = z_out, ReLU6 hi =
// z_out + round(6 / s_out) (round is monotonic, so clamping after rounding equals rounding
// after the float clamp the QAT graph applies).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/nn/trace.hpp"
#include "xquant/runtime/graph_types.hpp"

namespace xquant::runtime {

/// The grid as the engine stores it: 8-bit grids in uint8 (signed ones shifted by +128).
inline activation_grid stored_grid(const activation_grid& g, const std::string& where) {
  check<value_error>(g.qmin <= g.qmax, where, ": activation range [", g.qmin, ", ", g.qmax, "] is empty");
  check<value_error>(std::isfinite(g.scale) && g.scale > 0, where, ": activation scale ", g.scale,
                     " is not a positive finite number");
  activation_grid s = g;
  if (g.qmin >= -128 && g.qmax <= 127 && g.qmin < 0) {
    s.zero_point += 128;
    s.qmin += 128;
    s.qmax += 128;
  }
  check<value_error>(s.qmin >= 0 && s.qmax <= 255, where, ": activations on [", g.qmin, ", ", g.qmax,
                     "] do not fit 8 bits; the int8 engine runs activations of at most 8 bits");
  check<value_error>(s.zero_point >= 0 && s.zero_point <= 255, where, ": activation zero point ", g.zero_point,
                     " lies outside its 8-bit storage");
  return s;
}

/// Reorders the weight of `spec` from [out][c][kh][kw] to [out][kh][kw][c]. For a dense
/// layer after flatten of an NHWC tensor of `flat_c` channels (0: not after flatten), the
/// inputs are reordered from C-major (what the NCHW model flattened) to channel-innermost.
inline std::vector<std::int32_t> nhwc_weight_order(const nn::weighted_spec& spec, std::size_t flat_c) {
  const std::size_t cin = spec.is_linear ? spec.in : spec.in / spec.groups;
  const std::size_t k = spec.kernel;
  std::vector<std::int32_t> w(spec.weight.size());
  if (spec.is_linear && flat_c > 0) {
    const std::size_t hw = spec.in / flat_c;
    for (std::size_t o = 0; o < spec.out; ++o)
      for (std::size_t c = 0; c < flat_c; ++c)
        for (std::size_t p = 0; p < hw; ++p) w[o * spec.in + p * flat_c + c] = spec.weight[o * spec.in + c * hw + p];
    return w;
  }
  for (std::size_t o = 0; o < spec.out; ++o)
    for (std::size_t c = 0; c < cin; ++c)
      for (std::size_t t = 0; t < k * k; ++t) w[(o * k * k + t) * cin + c] = spec.weight[(o * cin + c) * k * k + t];
  return w;
}

/// Lowers a weighted layer whose input lies on `in` (stored grid). `flat_c` as in
/// nhwc_weight_order. Throws value_error when the numbers do not fit the int8 engine.
inline lowered_weighted lower_weighted(const nn::weighted_spec& spec, const activation_grid& in,
                                       const activation_grid& out_stored, std::size_t flat_c,
                                       const std::string& where) {
  check<value_error>(spec.weight_qmin >= -128 && spec.weight_qmax <= 127, where, ": weights on [", spec.weight_qmin,
                     ", ", spec.weight_qmax, "] do not fit int8");
  lowered_weighted L;
  L.out = spec.out;
  L.depth = spec.weight.size() / spec.out;
  const std::vector<std::int32_t> w = nhwc_weight_order(spec, flat_c);
  L.weight.resize(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) L.weight[i] = static_cast<std::int8_t>(w[i]);

  std::vector<float> multipliers(spec.out);
  L.bias.resize(spec.out);
  for (std::size_t o = 0; o < spec.out; ++o) {
    const double acc_scale = static_cast<double>(in.scale) * spec.weight_scale[o];
    const double b = std::nearbyint(spec.bias[o] / acc_scale);
    std::int64_t wsum = 0, wabs = 0;
    for (std::size_t k = 0; k < L.depth; ++k) {
      wsum += L.weight[o * L.depth + k];
      wabs += std::abs(L.weight[o * L.depth + k]);
    }
    // Worst case |acc| over any input: the int32 accumulator must not overflow.
    const double bound = std::abs(b) + static_cast<double>(wabs) * 255.0 + std::abs(in.zero_point * wsum);
    check<value_error>(bound < 2147483647.0, where, ": output channel ", o, " can overflow the int32 accumulator "
                       "(bias ", spec.bias[o], " at accumulator scale ", acc_scale, ")");
    L.bias[o] = static_cast<std::int32_t>(b - static_cast<double>(in.zero_point) * static_cast<double>(wsum));
    multipliers[o] = static_cast<float>(acc_scale / out_stored.scale);
  }
  std::int32_t lo = 0, hi = 0;
  fused_clamp(spec.act, out_stored, lo, hi);
  L.requant = kernels::make_requant_channel_params<std::uint8_t>(multipliers, out_stored.zero_point, lo, hi);
  return L;
}

}  // namespace xquant::runtime
