#pragma once
// choose_params: from an observed real range [min, max] to (scale, zero_point).
//
// 1. The range is widened to contain 0, so that real 0 maps to an integer exactly
//    (zero padding, ReLU zeros and the zero point correction in int8 kernels rely on it).
// 2. symmetric:  scale = max(|min|, |max|) / qmax, zero_point = 0.
//      With narrow_bits<8> that is amax / 127 and the integers used are [-127, 127].
//    asymmetric: scale = (max - min) / (qmax - qmin),
//                zero_point = qmin - round_half_even(min / scale), clamped to [qmin, qmax]
//      (the zero point is "nudged" to an integer; Jacob et al. 2018 §2.1).
// 3. power_of_two_scale: scale is rounded *up* to the next power of two, so the whole
//    observed range stays representable, and the zero point is recomputed.
// 4. Degenerate input: an all-zero range gives scale 1 (any scale represents it
//    exactly); a range whose scale would be below min_scale gets min_scale. An empty
//    range (min > max: the observer saw no data) or a NaN/Inf bound is an error.

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>

#include "xquant/core/error.hpp"
#include "xquant/quant/params.hpp"

namespace xquant {

/// An observed real range. The default value is the empty range.
struct value_range {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();

  bool empty() const { return min > max; }
  void include(float v) {
    min = std::min(min, v);
    max = std::max(max, v);
  }
  void include(const value_range& r) {
    min = std::min(min, r.min);
    max = std::max(max, r.max);
  }
  friend bool operator==(const value_range&, const value_range&) = default;
};

namespace detail {

inline float power_of_two_at_least(double v) {
  int exponent = 0;
  const double mantissa = std::frexp(v, &exponent);  // v = mantissa * 2^exponent, mantissa in [0.5, 1)
  return static_cast<float>(std::ldexp(1.0, mantissa == 0.5 ? exponent - 1 : exponent));
}

template <quant_scheme Scheme>
std::pair<float, std::int32_t> params_for_range(value_range r) {
  check(!r.empty(), "cannot choose quantization parameters for an empty range (no data observed)");
  check<numeric_error>(std::isfinite(r.min) && std::isfinite(r.max), "cannot choose quantization "
                       "parameters for a range with a NaN or infinite bound [", r.min, ", ", r.max, "]");
  const double lo = std::min(0.0, static_cast<double>(r.min));
  const double hi = std::max(0.0, static_cast<double>(r.max));
  constexpr double qmin = Scheme::qmin;
  constexpr double qmax = Scheme::qmax;

  double scale = Scheme::is_symmetric ? std::max(-lo, hi) / qmax : (hi - lo) / (qmax - qmin);
  if (scale == 0.0) scale = 1.0;
  scale = std::max(scale, static_cast<double>(min_scale));
  float s = Scheme::power_of_two ? power_of_two_at_least(scale) : static_cast<float>(scale);
  // A float rounding of scale may land just below the exact value; keep it >= min_scale.
  s = std::max(s, min_scale);

  std::int32_t zero_point = 0;
  if constexpr (!Scheme::is_symmetric) {
    const double z = qmin - std::nearbyint(lo / static_cast<double>(s));
    zero_point = static_cast<std::int32_t>(std::clamp(z, qmin, qmax));
  }
  return {s, zero_point};
}

}  // namespace detail

/// Per-tensor parameters for the observed range [min, max].
template <quant_scheme Scheme>
quant_params choose_params(float min, float max) {
  static_assert(!Scheme::is_per_axis,
                "xquant: choose_params(min, max) is for per_tensor schemes; pass one "
                "value_range per channel for per_axis schemes");
  const auto [s, z] = detail::params_for_range<Scheme>({min, max});
  return quant_params::tensor(s, z);
}

/// Parameters from one range per channel (per_axis) or exactly one range (per_tensor).
template <quant_scheme Scheme>
quant_params choose_params(std::span<const value_range> ranges) {
  if constexpr (!Scheme::is_per_axis) {
    check<shape_error>(ranges.size() == 1, "per_tensor scheme needs exactly one range, got ",
                       ranges.size());
  } else {
    check<shape_error>(!ranges.empty(), "per_axis scheme needs at least one channel range");
  }
  quant_params p;
  p.axis = Scheme::axis;
  for (const value_range& r : ranges) {
    const auto [s, z] = detail::params_for_range<Scheme>(r);
    p.scale.push_back(s);
    p.zero_point.push_back(z);
  }
  return p;
}

}  // namespace xquant
