#pragma once
// Rounding rules, selected by the scheme's rounding tag.
//
// round_half_even is the default because it is what ONNX QuantizeLinear, numpy.rint and
// the IEEE-754 default rounding mode do: ties go to the even neighbour, so rounding
// errors of a symmetric distribution do not drift in one direction. It is implemented
// with std::nearbyint and therefore assumes the default FE_TONEAREST mode (xquant never
// changes the floating-point environment).
// round_half_away is std::round: ties move away from zero.

#include <cmath>
#include <type_traits>

#include "xquant/quant/tags.hpp"

namespace xquant {

template <class Rounding>
float round_to_integral(float v) {
  if constexpr (std::is_same_v<Rounding, round_half_even>) {
    return std::nearbyint(v);
  } else {
    static_assert(std::is_same_v<Rounding, round_half_away>, "xquant: unknown rounding tag");
    return std::round(v);
  }
}

template <class Rounding>
double round_to_integral(double v) {
  if constexpr (std::is_same_v<Rounding, round_half_even>) {
    return std::nearbyint(v);
  } else {
    static_assert(std::is_same_v<Rounding, round_half_away>, "xquant: unknown rounding tag");
    return std::round(v);
  }
}

}  // namespace xquant
