#pragma once
// Fixed-point multipliers: a float32 requantization scale as an integer and a shift.
//
//   scale == multiplier * 2^-shift      exactly, with 2^30 <= multiplier < 2^31
//
// Why this is exact: a float32 is f * 2^e with a significand f in [0.5, 1) of at most 24
// bits, so multiplier = f * 2^31 is an integer (its low 7 bits are zero) and shift = 31 - e.
// Nothing is rounded, which is what lets the integer kernel (reference/requantize.hpp)
// produce exactly round(acc * scale): the only rounding in the whole path is the final one.
// (gemmlowp/TFLite quantize a *double* scale to a 31-bit multiplier, which rounds the scale
// itself; their results match the float scale only approximately.)
//
// Domain: 0 < scale < 2^30, finite. The upper bound keeps shift >= 1, so requantization
// always ends with a rounding right shift and |acc * scale| stays far from int64 overflow;
// a real requantization scale (input_scale * weight_scale / output_scale) is almost always
// below 1, and above 2^16 every non-zero accumulator saturates a 16-bit output anyway.
// There is no lower bound: subnormal scales are exact too (shift up to 179). Shifts above 62
// give round(acc * scale) == 0 for every int32 acc; the kernels use min(shift, 63), which
// gives the same result with a defined 64-bit shift.
//
// Bad scales (zero, negative, NaN, Inf, too large) throw value_error here, where the
// parameters are computed; the kernels take the result as plain, trusted integers.

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "xquant/core/error.hpp"

namespace xquant::kernels {

/// scale == multiplier * 2^-shift, with multiplier in [2^30, 2^31) and shift >= 1.
struct fixed_point_multiplier {
  std::int32_t multiplier = 1 << 30;
  int shift = 31;  ///< 1 <= shift <= 179

  friend bool operator==(const fixed_point_multiplier&, const fixed_point_multiplier&) = default;
};

/// Requantization scales must lie in (0, max_requant_scale).
inline constexpr float max_requant_scale = 1073741824.0f;  // 2^30

inline bool is_valid_requant_scale(float scale) {
  return std::isfinite(scale) && scale > 0.0f && scale < max_requant_scale;
}

/// The exact fixed-point form of a float32 scale; throws value_error for a scale outside
/// (0, 2^30) or not finite.
inline fixed_point_multiplier quantize_multiplier(float scale) {
  check<value_error>(is_valid_requant_scale(scale), "requantization scale ", scale,
                     " is not a finite number in (0, 2^30)");
  int exponent = 0;
  const float significand = std::frexp(scale, &exponent);  // scale = significand * 2^exponent
  return {static_cast<std::int32_t>(std::ldexp(static_cast<double>(significand), 31)), 31 - exponent};
}

/// quantize_multiplier for each scale (per-channel requantization); the message of a bad
/// scale names its channel.
struct fixed_point_multipliers {
  std::vector<std::int32_t> multiplier;
  std::vector<std::int32_t> shift;
};

inline fixed_point_multipliers quantize_multipliers(std::span<const float> scales) {
  fixed_point_multipliers out;
  out.multiplier.reserve(scales.size());
  out.shift.reserve(scales.size());
  for (std::size_t c = 0; c < scales.size(); ++c) {
    check<value_error>(is_valid_requant_scale(scales[c]), "requantization scale[", c, "] = ", scales[c],
                       " is not a finite number in (0, 2^30)");
    const fixed_point_multiplier m = quantize_multiplier(scales[c]);
    out.multiplier.push_back(m.multiplier);
    out.shift.push_back(m.shift);
  }
  return out;
}

}  // namespace xquant::kernels
