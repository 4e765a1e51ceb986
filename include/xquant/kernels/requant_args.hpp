#pragma once
// Run-time arguments of the requantization kernels (int32 accumulator -> narrow integer).
//
// One float32 scale drives both paths: the float path multiplies by `scale`, the
// fixed-point path by `multiplier * 2^-shift`, which is the same number exactly
// (fixed_point.hpp). The output side is the affine zero point and the clamp bounds
// [qmin, qmax] (a fused ReLU / ReLU6 is just a narrower clamp).
//
// The make_* functions are the point where parameters are computed and therefore where bad
// input is reported (value_error): a scale that is not a finite number in (0, 2^30), a zero
// point or clamp bound outside the output type, qmin > qmax. The kernels take the structs
// as trusted plain data and never throw. Two facts they rely on follow from these checks:
// |zero_point|, |qmin|, |qmax| <= 65535 and qmax - qmin <= 65535.

#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/kernels/fixed_point.hpp"

namespace xquant::kernels {

/// The output types the kernels write.
template <class Out>
concept narrow_integer = std::is_same_v<Out, std::int8_t> || std::is_same_v<Out, std::uint8_t> ||
    std::is_same_v<Out, std::int16_t>;

/// Per-tensor requantization: one scale for every accumulator.
struct requant_args {
  float scale = 1.0f;                 ///< float path
  std::int32_t multiplier = 1 << 30;  ///< fixed-point path: scale == multiplier * 2^-shift,
  std::int32_t shift = 30;            ///< multiplier in [2^30, 2^31), shift >= 1
  std::int32_t zero_point = 0;
  std::int32_t qmin = 0;  ///< clamp bounds, inside the output type
  std::int32_t qmax = 0;
};

/// Per-channel requantization of acc[row][channel] (NHWC: channel innermost): one scale per
/// output channel, one zero point and clamp for the whole output tensor. The arrays have one
/// entry per channel and are owned by the caller (see requant_channel_params).
struct requant_channel_args {
  const float* scale = nullptr;
  const std::int32_t* multiplier = nullptr;
  const std::int32_t* shift = nullptr;
  std::int32_t zero_point = 0;
  std::int32_t qmin = 0;
  std::int32_t qmax = 0;
};

/// Throws value_error unless zero_point, qmin and qmax lie in Out and qmin <= qmax.
template <narrow_integer Out>
void check_output_params(std::int32_t zero_point, std::int32_t qmin, std::int32_t qmax) {
  constexpr std::int32_t lo = std::numeric_limits<Out>::lowest();
  constexpr std::int32_t hi = std::numeric_limits<Out>::max();
  check<value_error>(zero_point >= lo && zero_point <= hi, "output zero point ", zero_point,
                     " is outside the output type's range [", lo, ", ", hi, "]");
  check<value_error>(qmin >= lo && qmax <= hi && qmin <= qmax, "output clamp [", qmin, ", ", qmax,
                     "] is not an ordered range inside [", lo, ", ", hi, "]");
}

/// Validated per-tensor arguments for an output of type Out.
template <narrow_integer Out>
requant_args make_requant_args(float scale, std::int32_t zero_point,
                               std::int32_t qmin = std::numeric_limits<Out>::lowest(),
                               std::int32_t qmax = std::numeric_limits<Out>::max()) {
  const fixed_point_multiplier m = quantize_multiplier(scale);
  check_output_params<Out>(zero_point, qmin, qmax);
  return {scale, m.multiplier, m.shift, zero_point, qmin, qmax};
}

/// Owns the per-channel arrays; args() is a view valid while this object lives unchanged.
struct requant_channel_params {
  std::vector<float> scale;
  fixed_point_multipliers fixed;
  std::int32_t zero_point = 0;
  std::int32_t qmin = 0;
  std::int32_t qmax = 0;

  std::size_t channels() const { return scale.size(); }
  requant_channel_args args() const {
    return {scale.data(), fixed.multiplier.data(), fixed.shift.data(), zero_point, qmin, qmax};
  }
};

/// Validated per-channel arguments for an output of type Out.
template <narrow_integer Out>
requant_channel_params make_requant_channel_params(std::span<const float> scales, std::int32_t zero_point,
                                                   std::int32_t qmin = std::numeric_limits<Out>::lowest(),
                                                   std::int32_t qmax = std::numeric_limits<Out>::max()) {
  requant_channel_params p;
  p.fixed = quantize_multipliers(scales);
  check_output_params<Out>(zero_point, qmin, qmax);
  p.scale.assign(scales.begin(), scales.end());
  p.zero_point = zero_point;
  p.qmin = qmin;
  p.qmax = qmax;
  return p;
}

}  // namespace xquant::kernels
