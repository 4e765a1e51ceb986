#pragma once
// Pooling on uint8 NHWC activations, the specification (kernels/int8/pool.hpp is the fast
// version and must equal it byte for byte).
//
// ---- 2x2 max pool, stride 2 ----------------------------------------------------------------
//
//   out[n][oh][ow][c] = max of x[n][2 oh + i][2 ow + j][c], i, j in {0, 1}
//
// Output [n][h / 2][w / 2][c], floor mode (PyTorch's default): an odd last row or column is
// dropped. Input and output share scale and zero point (max commutes with the monotone
// affine map), so no requantization.
//
// ---- global average pool ------------------------------------------------------------------
//
//   sum[n][c] = sum over the P = h * w pixels of x[n][.][.][c]          int32, exact
//   acc       = sum - P * zp_in                                         the centred sum
//   out[n][c] = requantize_fixed(acc, M) = clamp(zp_out + round(acc * M), qmin, qmax)
//
// with M = s_in / (s_out * P) rounded UP to a float32 (the smallest float32 >= the real
// quotient, found with an exact fma sign test), held as an exact fixed-point multiplier
// (fixed_point.hpp). The rounding is the fixed-point path's: the exact product acc * M
// rounded half away from zero (reference/requantize.hpp).
//
// Error. Against the real value v = acc * s_in / (s_out * P), M's only error is upward and
// below one float32 ulp, so |v| <= |acc * M| <= |v| (1 + 2^-23): the result is round(v),
// half away from zero, exactly, unless |v| lies within |v| 2^-23 below a half-integer, and it
// is always within one step of round(v). Rounding M up rather than to nearest makes exact
// ties go away from zero as the rule says, instead of whichever way M's error points. In
// the common case s_out == s_in (PyTorch keeps the input's quantization through an average
// pool) v = acc / P, which is either a tie or at least 1 / (2P) away from one, and
// |v| 2^-23 <= 255 * 2^-23 < 1 / (2P) for P <= 16448 pixels: the output is then exactly
// the integer mean rounded half away from zero. The sums fit int32 for P * 255 < 2^31,
// checked by make_global_avg_pool_params.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "xquant/core/error.hpp"
#include "xquant/kernels/reference/int8/shape.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_args.hpp"

namespace xquant::kernels::int8 {

/// The output shape of a 2x2 stride-2 max pool (floor mode); throws shape_error unless the
/// input has at least 2 rows and 2 columns.
inline nhwc_shape max_pool2x2_output(const nhwc_shape& in) {
  check_nhwc(in, "max pool input");
  check<shape_error>(in.h >= 2 && in.w >= 2, "max pool 2x2: input ", in.h, "x", in.w, " is smaller than 2x2");
  return {in.n, in.h / 2, in.w / 2, in.c};
}

/// The smallest float32 M >= s_in / (s_out * pixels): the nearest float to the double
/// quotient, stepped up while M * s_out * pixels < s_in. M * s_out is exact in double
/// (24 + 24 significant bits) and fma rounds (M * s_out) * pixels - s_in once, which keeps
/// its sign, so the test is exact.
inline float average_multiplier(float s_in, float s_out, std::size_t pixels) noexcept {
  const double p = static_cast<double>(pixels);
  float m = static_cast<float>(static_cast<double>(s_in) / (static_cast<double>(s_out) * p));
  while (std::fma(static_cast<double>(m) * s_out, p, -static_cast<double>(s_in)) < 0) {
    m = std::nextafter(m, std::numeric_limits<float>::infinity());
  }
  return m;
}

/// A global average pool over an NHWC input; output [in.n][in.c].
struct global_avg_pool_params {
  nhwc_shape in;
  std::int32_t input_zero_point = 0;
  requant_args requant;  ///< scale s_in / (s_out * h * w), output zero point and clamp
};

/// Throws value_error for a scale that is not finite and positive, zero points or clamp
/// bounds outside [0, 255], or a requantization scale outside (0, 2^30); shape_error for an
/// empty shape or more than (2^31 - 1) / 255 pixels per image.
inline global_avg_pool_params make_global_avg_pool_params(const nhwc_shape& in, float input_scale,
                                                          std::int32_t input_zero_point, float output_scale,
                                                          std::int32_t output_zero_point, std::int32_t qmin = 0,
                                                          std::int32_t qmax = 255) {
  check_nhwc(in, "global average pool input");
  const std::size_t pixels = in.h * in.w;
  check<shape_error>(pixels <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max() / 255),
                     "global average pool: ", pixels, " pixels per image overflow the int32 sum");
  check<value_error>(std::isfinite(input_scale) && input_scale > 0 && std::isfinite(output_scale) && output_scale > 0,
                     "global average pool: scales ", input_scale, ", ", output_scale, " must be finite and positive");
  check<value_error>(input_zero_point >= 0 && input_zero_point <= 255, "global average pool: input zero point ",
                     input_zero_point, " is outside [0, 255]");
  global_avg_pool_params p;
  p.in = in;
  p.input_zero_point = input_zero_point;
  p.requant = make_requant_args<std::uint8_t>(average_multiplier(input_scale, output_scale, pixels), output_zero_point,
                                              qmin, qmax);
  return p;
}

}  // namespace xquant::kernels::int8

namespace xquant::kernels::reference::int8 {

using kernels::int8::global_avg_pool_params;
using kernels::int8::nhwc_shape;

/// x: in = [n][h][w][c], h and w >= 2; out: [n][h / 2][w / 2][c].
inline void max_pool2x2(const std::uint8_t* x, const nhwc_shape& in, std::uint8_t* out) noexcept {
  const nhwc_shape o{in.n, in.h / 2, in.w / 2, in.c};
  for (std::size_t n = 0; n < o.n; ++n) {
    for (std::size_t oh = 0; oh < o.h; ++oh) {
      for (std::size_t ow = 0; ow < o.w; ++ow) {
        for (std::size_t c = 0; c < o.c; ++c) {
          std::uint8_t m = 0;
          for (std::size_t i = 0; i < 2; ++i) {
            for (std::size_t j = 0; j < 2; ++j) m = std::max(m, x[in.at(n, 2 * oh + i, 2 * ow + j) + c]);
          }
          out[o.at(n, oh, ow) + c] = m;
        }
      }
    }
  }
}

/// x: p.in = [n][h][w][c]; out: [n][c].
inline void global_avg_pool(const std::uint8_t* x, const global_avg_pool_params& p, std::uint8_t* out) noexcept {
  const std::size_t pixels = p.in.h * p.in.w;
  const requant_args& rq = p.requant;
  for (std::size_t n = 0; n < p.in.n; ++n) {
    for (std::size_t c = 0; c < p.in.c; ++c) {
      std::int32_t sum = 0;
      for (std::size_t i = 0; i < pixels; ++i) sum += x[(n * pixels + i) * p.in.c + c];
      const std::int32_t acc = sum - static_cast<std::int32_t>(pixels) * p.input_zero_point;
      out[n * p.in.c + c] =
          requantize_fixed<std::uint8_t>(acc, rq.multiplier, rq.shift, rq.zero_point, rq.qmin, rq.qmax);
    }
  }
}

}  // namespace xquant::kernels::reference::int8
