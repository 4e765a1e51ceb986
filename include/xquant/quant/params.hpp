#pragma once
// Quantization parameters: the run-time data of an affine quantizer.
//
//   real = scale * (q - zero_point)          (Jacob et al. 2018, eq. 1)
//
// Per tensor there is one (scale, zero_point); per axis there is one for each index of
// `axis`. The scheme (scheme.hpp) says which integer range q lives in and how the
// parameters may be chosen; validate<Scheme>() checks that a quant_params fits it.

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant {

struct quant_params {
  std::vector<float> scale;
  std::vector<std::int32_t> zero_point;
  int axis = -1;  ///< -1: per tensor

  static quant_params tensor(float scale, std::int32_t zero_point) {
    return {{scale}, {zero_point}, -1};
  }
  static quant_params along(int axis, std::vector<float> scales, std::vector<std::int32_t> zero_points) {
    return {std::move(scales), std::move(zero_points), axis};
  }

  bool is_per_tensor() const { return axis < 0; }
  std::size_t channels() const { return scale.size(); }

  friend bool operator==(const quant_params&, const quant_params&) = default;
};

/// The smallest scale xquant accepts: the smallest normal float. A smaller (subnormal)
/// scale would make 1/scale overflow to infinity in the float paths.
inline constexpr float min_scale = std::numeric_limits<float>::min();

inline bool is_power_of_two(float v) {
  int exponent = 0;
  return std::isfinite(v) && v > 0 && std::frexp(v, &exponent) == 0.5f;
}

/// Checks that `p` is a valid parameter set for Scheme; throws value_error naming the
/// first problem.
template <quant_scheme Scheme>
void validate(const quant_params& p) {
  check(!p.scale.empty(), "quant_params has no scale");
  check(p.scale.size() == p.zero_point.size(), "quant_params has ", p.scale.size(), " scales but ",
        p.zero_point.size(), " zero points");
  if constexpr (Scheme::is_per_axis) {
    check(p.axis == Scheme::axis, "scheme is per_axis<", Scheme::axis, "> but quant_params.axis is ",
          p.axis);
  } else {
    check(p.axis < 0 && p.scale.size() == 1, "scheme is per_tensor but quant_params has axis ", p.axis,
          " and ", p.scale.size(), " scales");
  }
  for (std::size_t c = 0; c < p.scale.size(); ++c) {
    const float s = p.scale[c];
    check(std::isfinite(s) && s >= min_scale, "scale[", c, "] = ", s,
          " is not a finite number >= ", min_scale);
    const std::int32_t z = p.zero_point[c];
    check(z >= Scheme::qmin && z <= Scheme::qmax, "zero_point[", c, "] = ", z, " is outside [",
          Scheme::qmin, ", ", Scheme::qmax, "]");
    if constexpr (Scheme::is_symmetric) {
      check(z == 0, "symmetric scheme needs zero_point 0, got zero_point[", c, "] = ", z);
    }
    if constexpr (Scheme::power_of_two) {
      check(is_power_of_two(s), "power_of_two_scale scheme got scale[", c, "] = ", s);
    }
  }
}

/// Checks that `p` fits a tensor of `shape` (axis in range, one scale per channel).
inline void validate_shape(const quant_params& p, std::span<const std::size_t> shape) {
  if (p.is_per_tensor()) return;
  check<shape_error>(static_cast<std::size_t>(p.axis) < shape.size(), "quant_params.axis ", p.axis,
                     " is out of range for a tensor of shape ", shape_string(shape));
  check<shape_error>(shape[static_cast<std::size_t>(p.axis)] == p.scale.size(), "quant_params has ",
                     p.scale.size(), " channels but axis ", p.axis, " of shape ", shape_string(shape),
                     " has ", shape[static_cast<std::size_t>(p.axis)]);
}

}  // namespace xquant
