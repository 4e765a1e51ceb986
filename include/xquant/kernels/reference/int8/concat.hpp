#pragma once
// Channel concatenation of uint8 NHWC tensors with different quantizations, the
// specification (kernels/int8/concat.hpp is the fast version and must equal it byte for
// byte).
//
// Every input is requantized to the output grid with the residual add's arithmetic
// (reference/int8/add.hpp) for a single term:
//
//   real:     out = zp_out + round(alpha * (x - zp_x)),  clamped,   alpha = s_x / s_out
//   integer:  out = clamp(zp_out + round_half_away(A * (x - zp_x) / 2^S), qmin, qmax)
//
// with A = round(alpha * 2^S) and S = shared_shift(alpha) (the largest shift <= 31 with
// A < 2^21), so |A (x - zp_x)| < 255 * 2^21 and the rounding add stays inside int32. The
// error against the real value is at most 255 / 2^(S+1), half the add's bound: the result
// is the exactly rounded value unless that lies that close to a half-integer, and always
// within one step. An input already on the output grid (alpha = 1, same zero point) gets
// A = 2^S exactly and is copied unchanged, up to the output clamp.
//
// The pixels of every input and of the output are consecutive; input i's channels land at
// channel offset c_0 + ... + c_(i-1) of each output pixel (concatenation along C of NHWC,
// as the NCHW model concatenates along axis 1).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "xquant/core/error.hpp"
#include "xquant/kernels/reference/int8/add.hpp"
#include "xquant/kernels/requant_args.hpp"

namespace xquant::kernels::int8 {

/// The integer form of moving one input onto the output grid (make_rescale_params).
struct rescale_params {
  std::int32_t multiplier = 0;     ///< A in [0, 2^21)
  std::int32_t shift = 1;          ///< S in [10, 31]
  std::int32_t zero_point_in = 0;  ///< in [0, 255]
  std::int32_t zero_point = 0;     ///< output, in [0, 255]
  std::int32_t qmin = 0, qmax = 255;

  /// True when the rescale is a plain byte copy: alpha = 1, equal zero points, no clamp.
  bool is_copy() const noexcept {
    return multiplier == (std::int32_t{1} << shift) && zero_point_in == zero_point && qmin == 0 && qmax == 255;
  }
};

/// Validated parameters: throws value_error for a scale that is not finite and positive, a
/// zero point or clamp bound outside [0, 255], qmin > qmax, or s_in / s_out of
/// max_add_ratio or more.
inline rescale_params make_rescale_params(float scale_in, std::int32_t zero_point_in, float scale_out,
                                          std::int32_t zero_point_out, std::int32_t qmin = 0,
                                          std::int32_t qmax = 255) {
  check<value_error>(std::isfinite(scale_in) && scale_in > 0 && std::isfinite(scale_out) && scale_out > 0,
                     "concat: scales ", scale_in, " and ", scale_out, " must be finite and positive");
  check<value_error>(zero_point_in >= 0 && zero_point_in <= 255, "concat: input zero point ", zero_point_in,
                     " is outside [0, 255]");
  check_output_params<std::uint8_t>(zero_point_out, qmin, qmax);
  const double alpha = static_cast<double>(scale_in) / scale_out;
  check<value_error>(alpha < max_add_ratio, "concat: scale ratio ", alpha, " = ", scale_in, " / ", scale_out,
                     " must be below ", max_add_ratio);
  rescale_params p;
  p.shift = shared_shift(alpha);
  p.multiplier = static_cast<std::int32_t>(std::llround(std::ldexp(alpha, p.shift)));
  p.zero_point_in = zero_point_in;
  p.zero_point = zero_point_out;
  p.qmin = qmin;
  p.qmax = qmax;
  return p;
}

/// One input of a concatenation: `channels` bytes per pixel at `data`, and how they move
/// onto the output grid.
struct concat_input {
  const std::uint8_t* data = nullptr;
  std::size_t channels = 0;
  rescale_params k;
};

}  // namespace xquant::kernels::int8

namespace xquant::kernels::reference::int8 {

using kernels::int8::concat_input;
using kernels::int8::rescale_params;

inline std::uint8_t rescale(std::uint8_t x, const rescale_params& k) noexcept {
  const std::int32_t p = k.multiplier * (x - k.zero_point_in);
  const std::int32_t q = (p + (std::int32_t{1} << (k.shift - 1)) - (p < 0 ? 1 : 0)) >> k.shift;
  return static_cast<std::uint8_t>(std::clamp(q + k.zero_point, k.qmin, k.qmax));
}

/// out[i] = rescale(x[i], k), i < n.
inline void rescale(const std::uint8_t* x, std::size_t n, const rescale_params& k, std::uint8_t* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = rescale(x[i], k);
}

/// `pixels` pixels of every input, concatenated along the channels into out (which holds
/// pixels * (sum of the inputs' channels) bytes and overlaps no input).
inline void concat(std::span<const concat_input> inputs, std::size_t pixels, std::uint8_t* out) noexcept {
  for (std::size_t p = 0; p < pixels; ++p) {
    for (const concat_input& in : inputs) {
      rescale(in.data + p * in.channels, in.channels, in.k, out);
      out += in.channels;
    }
  }
}

}  // namespace xquant::kernels::reference::int8
