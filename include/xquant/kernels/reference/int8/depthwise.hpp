#pragma once
// Depthwise 3x3 convolution on uint8 NHWC activations, the specification
// (kernels/int8/depthwise.hpp is the fast version and must equal it byte for byte).
//
// Stride 1 or 2, padding 1 on every side, one 3x3 int8 filter per channel:
//
//   acc[n][oh][ow][c] = bias[c] + sum over kh, kw in 0..2 of w[c][kh][kw] * xp[n][ih][iw][c]
//   ih = oh * stride + kh - 1,  iw = ow * stride + kw - 1
//   xp = x inside the image, the input zero point zp_in on the padding
//   out = requantize_fixed(acc, multiplier[c], shift[c]) with the output zero point and clamp
//
// The padding scheme. The converter folds the input zero point into the bias for every
// convolution (bias[c] = b[c] - zp_in * sum(w[c])), so the sum runs over the raw uint8
// values. Padding with zp_in then makes every tap, real or padded, contribute
// w * (xp - zp_in) on top of b[c]: exactly real zero padding, with the folded bias of the
// other convolutions and no border-dependent correction. (Skipping padded taps instead would
// need the unfolded bias, or a per-border-position correction zp_in * sum of the missing
// taps.) The fast kernel reads padded taps from a row of zp_in bytes, so interior and border
// pixels run the same code.
//
// Range: |acc| <= |bias| + 9 * 255 * 128 < 2^31 when |bias| <= 2^30 (max_depthwise_bias,
// checked where the weights are packed), so int32 arithmetic is exact.
// Requantization is reference::requantize_fixed (round half away from zero of
// acc * multiplier / 2^shift), per channel; per-tensor is every channel given the same
// multiplier and shift.

#include <cstddef>
#include <cstdint>

#include "xquant/core/error.hpp"
#include "xquant/kernels/reference/int8/shape.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_args.hpp"

namespace xquant::kernels::int8 {

/// |bias| bound that keeps the int32 accumulator exact (see above).
inline constexpr std::int32_t max_depthwise_bias = 1 << 30;

/// A 3x3, padding-1 depthwise convolution over an NHWC input; output [n][out_h][out_w][c].
struct depthwise_geometry {
  nhwc_shape in;
  std::size_t stride = 1;  ///< 1 or 2
  std::size_t out_h = 0, out_w = 0;

  nhwc_shape out() const noexcept { return {in.n, out_h, out_w, in.c}; }
};

/// Throws shape_error unless every dimension is positive and stride is 1 or 2.
inline depthwise_geometry make_depthwise_geometry(const nhwc_shape& in, std::size_t stride) {
  check_nhwc(in, "depthwise input");
  check<shape_error>(stride == 1 || stride == 2, "depthwise 3x3: stride ", stride, " is not 1 or 2");
  depthwise_geometry g;
  g.in = in;
  g.stride = stride;
  g.out_h = (in.h - 1) / stride + 1;  // (h + 2 - 3) / stride + 1
  g.out_w = (in.w - 1) / stride + 1;
  return g;
}

}  // namespace xquant::kernels::int8

namespace xquant::kernels::reference::int8 {

using kernels::int8::depthwise_geometry;

/// x: [n][h][w][c]; weights: [c][3][3] (PyTorch's [c][1][3][3]); bias: [c], folded, |bias|
/// <= 2^30; rq: per-channel requantization with c entries; out: [n][out_h][out_w][c].
inline void depthwise3x3(const std::uint8_t* x, const depthwise_geometry& g, const std::int8_t* weights,
                         const std::int32_t* bias, std::uint8_t input_zero_point, const requant_channel_args& rq,
                         std::uint8_t* out) noexcept {
  using index = std::ptrdiff_t;
  const kernels::int8::nhwc_shape& s = g.in;
  for (std::size_t n = 0; n < s.n; ++n) {
    for (std::size_t oh = 0; oh < g.out_h; ++oh) {
      for (std::size_t ow = 0; ow < g.out_w; ++ow) {
        for (std::size_t c = 0; c < s.c; ++c) {
          std::int32_t acc = bias[c];
          for (std::size_t kh = 0; kh < 3; ++kh) {
            for (std::size_t kw = 0; kw < 3; ++kw) {
              const index ih = static_cast<index>(oh * g.stride + kh) - 1;
              const index iw = static_cast<index>(ow * g.stride + kw) - 1;
              const bool inside = ih >= 0 && iw >= 0 && ih < static_cast<index>(s.h) && iw < static_cast<index>(s.w);
              const std::int32_t v = inside ? x[s.at(n, static_cast<std::size_t>(ih), static_cast<std::size_t>(iw)) + c]
                                            : input_zero_point;
              acc += weights[c * 9 + kh * 3 + kw] * v;
            }
          }
          out[g.out().at(n, oh, ow) + c] =
              requantize_fixed<std::uint8_t>(acc, rq.multiplier[c], rq.shift[c], rq.zero_point, rq.qmin, rq.qmax);
        }
      }
    }
  }
}

}  // namespace xquant::kernels::reference::int8
