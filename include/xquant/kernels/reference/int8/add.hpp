#pragma once
// Residual add of two uint8 tensors with different quantizations, the specification
// (kernels/int8/add.hpp is the fast version and must equal it byte for byte).
//
//   real:     out = zp_out + round(alpha * (a - zp_a) + beta * (b - zp_b)),  clamped
//             alpha = s_a / s_out,  beta = s_b / s_out
//   integer:  p   = A * (a - zp_a) + B * (b - zp_b)                        int32, exact
//             out = clamp(zp_out + round_half_away(p / 2^S), qmin, qmax)
//
// A = round(alpha * 2^S), B = round(beta * 2^S) share ONE shift S, so the whole sum is
// rounded once (TFLite instead shifts both inputs left by 20 bits, rounds each scaled input
// with its own Q31 multiplier, adds, and rounds the sum again with a third: at least three
// roundings, each of them two-step in gemmlowp's arithmetic). S is
// the largest shift <= 31 with max(A, B) < 2^21; that bound keeps |p| <= 510 * (2^21 - 1)
// and |p| + 2^(S-1) < 2^31, so the rounding add cannot overflow int32 (the SIMD kernel
// relies on it). Rounding is half away from zero, computed like the fixed-point
// requantization: (p + 2^(S-1) - (p < 0)) >> S.
//
// Error bound. |A - alpha 2^S| <= 1/2 and |B - beta 2^S| <= 1/2, so
//   |p / 2^S - (alpha da + beta db)| <= (|da| + |db|) / 2^(S+1) <= 255 / 2^S = e
// with da = a - zp_a, db = b - zp_b in [-255, 255]. With r = max(alpha, beta): when S < 31
// (r >= 2^-10), r * 2^S >= 2^20 - 1/2, so e ~<= 255 r 2^-20 ~= 2.4e-4 r; when S = 31,
// e <= 255 * 2^-31 ~= 1.2e-7.
// The result equals the exactly rounded real value unless that value lies within e of a
// half-integer, and is always within one step of it because e < 1/2: make_add_params
// requires alpha, beta < 2^10 (max_add_ratio), which gives e <= 0.25. (A ratio that large
// means one input step moves the output by over 1000 steps; real models stay far below.)
// Fused ReLU: qmin = zp_out (the real 0); ReLU6 also sets qmax.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "xquant/core/error.hpp"
#include "xquant/kernels/requant_args.hpp"

namespace xquant::kernels::int8 {

/// s_a / s_out and s_b / s_out must be below this (see the error bound above).
inline constexpr double max_add_ratio = 1024.0;

/// S for ratios whose largest is `largest` (in (0, max_add_ratio)): the largest shift <= 31
/// with round(largest * 2^S) < 2^21.
inline std::int32_t shared_shift(double largest) {
  int exponent = 0;
  (void)std::frexp(largest, &exponent);  // largest in [2^(e-1), 2^e)
  int shift = std::min(31, 21 - exponent);
  if (std::llround(std::ldexp(largest, shift)) >= (1 << 21)) --shift;  // rounded up to 2^21
  return shift;
}

/// The integer form of one residual add (make_add_params).
struct add_params {
  std::int32_t multiplier_a = 0, multiplier_b = 0;  ///< A, B in [0, 2^21)
  std::int32_t shift = 1;                           ///< S in [10, 31]
  std::int32_t zero_point_a = 0, zero_point_b = 0;  ///< inputs, in [0, 255]
  std::int32_t zero_point = 0;                      ///< output, in [0, 255]
  std::int32_t qmin = 0, qmax = 255;                ///< clamp, inside [0, 255]
};

/// Validated parameters: throws value_error for a scale that is not finite and positive, a
/// zero point or clamp bound outside [0, 255], qmin > qmax, or a ratio s_a / s_out or
/// s_b / s_out of max_add_ratio or more. qmin = zero_point_out fuses a ReLU.
inline add_params make_add_params(float scale_a, std::int32_t zero_point_a, float scale_b, std::int32_t zero_point_b,
                                  float scale_out, std::int32_t zero_point_out, std::int32_t qmin = 0,
                                  std::int32_t qmax = 255) {
  for (const float s : {scale_a, scale_b, scale_out}) {
    check<value_error>(std::isfinite(s) && s > 0, "add: scale ", s, " is not finite and positive");
  }
  for (const std::int32_t z : {zero_point_a, zero_point_b}) {
    check<value_error>(z >= 0 && z <= 255, "add: input zero point ", z, " is outside [0, 255]");
  }
  check_output_params<std::uint8_t>(zero_point_out, qmin, qmax);
  const double alpha = static_cast<double>(scale_a) / scale_out;
  const double beta = static_cast<double>(scale_b) / scale_out;
  check<value_error>(alpha < max_add_ratio && beta < max_add_ratio, "add: scale ratios ", alpha, " and ", beta,
                     " must be below ", max_add_ratio);
  const std::int32_t shift = shared_shift(std::max(alpha, beta));
  add_params p;
  p.multiplier_a = static_cast<std::int32_t>(std::llround(std::ldexp(alpha, shift)));
  p.multiplier_b = static_cast<std::int32_t>(std::llround(std::ldexp(beta, shift)));
  p.shift = shift;
  p.zero_point_a = zero_point_a;
  p.zero_point_b = zero_point_b;
  p.zero_point = zero_point_out;
  p.qmin = qmin;
  p.qmax = qmax;
  return p;
}

}  // namespace xquant::kernels::int8

namespace xquant::kernels::reference::int8 {

using kernels::int8::add_params;

inline std::uint8_t add(std::uint8_t a, std::uint8_t b, const add_params& k) noexcept {
  const std::int32_t p = k.multiplier_a * (a - k.zero_point_a) + k.multiplier_b * (b - k.zero_point_b);
  const std::int32_t q = (p + (std::int32_t{1} << (k.shift - 1)) - (p < 0 ? 1 : 0)) >> k.shift;
  return static_cast<std::uint8_t>(std::clamp(q + k.zero_point, k.qmin, k.qmax));
}

/// out[i] = add(a[i], b[i]), i < n; out may be a or b (in place).
inline void add(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, const add_params& k,
                std::uint8_t* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = add(a[i], b[i], k);
}

}  // namespace xquant::kernels::reference::int8
