#pragma once
// Depthwise 3x3 convolution (stride 1 or 2, padding 1) on uint8 NHWC activations; equals
// reference::int8::depthwise3x3 byte for byte (kernels/reference/int8/depthwise.hpp has the
// arithmetic and the padding scheme).
//
// Vectorised over channels: one int32 lane per channel, so a batch of channels is
//   acc = bias + sum over 9 taps of widen(x_tap[c..]) * w_tap[c..]
// (pmovzxbd loads, pmulld, paddd), then the fixed-point requantization of
// kernels/requantize.hpp (the same lanes code, so the same bits) and a clamped narrowing
// store. Products and sums are exact in int32 (|acc| < 2^31, see the reference).
//
// Packing (once per layer, pack_depthwise3x3): weights tap-major [9][c] and widened to
// int32 (so a tap's weights are a plain vector load, no widening shuffle per pixel), the
// folded bias, and a row of c input-zero-point bytes that padded taps read.
//
// Loop order: output rows, chunks of up to 16 output pixels of a row, channel blocks, the
// chunk's pixels. The 9 input pointers of each pixel of a chunk (into the image, or the
// zero-point row) are computed once per chunk; each channel block then loads its weights,
// bias and requantization constants once for the whole chunk. Channels past the last full
// batch use narrower batches (lanes::for_blocks), the last few plain scalar code with the
// reference's requantization.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/kernels/int8/lanes.hpp"
#include "xquant/kernels/reference/int8/depthwise.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/requantize.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8 {

/// A depthwise 3x3 layer's weights in the kernel's layout (built once by pack_depthwise3x3).
struct depthwise_packed {
  std::size_t channels = 0;
  std::vector<std::int32_t> weights;  ///< [9][channels], tap = 3 * kh + kw
  std::vector<std::int32_t> bias;     ///< [channels], folded (see the reference)
  std::vector<std::uint8_t> padding;  ///< [channels], all the input zero point
};

/// weights: [c][3][3] int8 (PyTorch's [c][1][3][3]); bias: [c] int32 with the input zero
/// point folded in. Throws shape_error for mismatched sizes and value_error for a zero point
/// outside [0, 255] or a |bias| above max_depthwise_bias.
inline depthwise_packed pack_depthwise3x3(std::span<const std::int8_t> weights, std::span<const std::int32_t> bias,
                                          std::int32_t input_zero_point) {
  const std::size_t c = bias.size();
  check<shape_error>(c > 0 && weights.size() == 9 * c, "depthwise 3x3: ", weights.size(), " weights for ", c,
                     " channels (want 9 per channel)");
  check<value_error>(input_zero_point >= 0 && input_zero_point <= 255, "depthwise 3x3: input zero point ",
                     input_zero_point, " is outside [0, 255]");
  depthwise_packed p;
  p.channels = c;
  p.weights.resize(9 * c);
  for (std::size_t ch = 0; ch < c; ++ch) {
    check<value_error>(bias[ch] >= -max_depthwise_bias && bias[ch] <= max_depthwise_bias, "depthwise 3x3: bias[", ch,
                       "] = ", bias[ch], " is outside [-2^30, 2^30]");
    for (std::size_t tap = 0; tap < 9; ++tap) p.weights[tap * c + ch] = weights[ch * 9 + tap];
  }
  p.bias.assign(bias.begin(), bias.end());
  p.padding.assign(c, static_cast<std::uint8_t>(input_zero_point));
  return p;
}

/// Throws shape_error unless the input, the packed weights and the requantization have the
/// same number of channels (the kernel trusts it).
inline void check_depthwise(const depthwise_geometry& g, const depthwise_packed& w, const requant_channel_params& rq) {
  check<shape_error>(g.in.c == w.channels && rq.channels() == w.channels, "depthwise 3x3: input has ", g.in.c,
                     " channels, the weights ", w.channels, ", the requantization ", rq.channels());
}

namespace detail {

inline constexpr std::size_t depthwise_chunk = 16;  // output pixels per pointer table

using tap_pointers = std::array<const std::uint8_t*, 9>;

/// The 9 tap pointers of output pixel (n, oh, ow): channel 0 of the input pixel, or the
/// zero-point row where the tap is padding.
inline tap_pointers depthwise_taps(const std::uint8_t* x, const depthwise_geometry& g, const std::uint8_t* padding,
                                   std::size_t n, std::size_t oh, std::size_t ow) noexcept {
  tap_pointers taps;
  for (std::size_t kh = 0; kh < 3; ++kh) {
    const std::size_t ih = oh * g.stride + kh;  // plus the padding, 1
    for (std::size_t kw = 0; kw < 3; ++kw) {
      const std::size_t iw = ow * g.stride + kw;
      const bool inside = ih >= 1 && ih <= g.in.h && iw >= 1 && iw <= g.in.w;
      taps[kh * 3 + kw] = inside ? x + g.in.at(n, ih - 1, iw - 1) : padding;
    }
  }
  return taps;
}

/// Channels [c, c + batch) of `count` pixels: out + p * channels is pixel p.
template <bool Clamp, class A>
void depthwise_block(const tap_pointers* taps, std::size_t count, std::size_t c, const depthwise_packed& w,
                     const requant_channel_args& rq, std::uint8_t* out) noexcept {
  using i32 = xsimd::batch<std::int32_t, A>;
  const std::size_t channels = w.channels;  // locals: the uint8_t stores may alias w and rq
  const int qmin = rq.qmin, qmax = rq.qmax;
  const auto k = kernels::detail::fixed_lanes_at<A>(rq, c);
  const i32 bias = i32::load_unaligned(w.bias.data() + c);
  std::array<i32, 9> weight;
  for (std::size_t t = 0; t < 9; ++t) weight[t] = i32::load_unaligned(w.weights.data() + t * channels + c);
  for (std::size_t p = 0; p < count; ++p) {
    i32 acc = bias;
    for (std::size_t t = 0; t < 9; ++t) acc += lanes::mul_i32(lanes::load_u8_as_i32<A>(taps[p][t] + c), weight[t]);
    simd::store_clamped<std::uint8_t, A>(out + p * channels + c, kernels::detail::fixed_batch<Clamp>(acc, k), qmin,
                                         qmax);
  }
}

/// Channels [c0, channels) of `count` pixels, scalar.
inline void depthwise_tail(const tap_pointers* taps, std::size_t count, std::size_t c0, const depthwise_packed& w,
                           const requant_channel_args& rq, std::uint8_t* out) noexcept {
  for (std::size_t p = 0; p < count; ++p) {
    for (std::size_t c = c0; c < w.channels; ++c) {
      std::int32_t acc = w.bias[c];
      for (std::size_t t = 0; t < 9; ++t) acc += taps[p][t][c] * w.weights[t * w.channels + c];
      out[p * w.channels + c] = reference::requantize_fixed<std::uint8_t>(acc, rq.multiplier[c], rq.shift[c],
                                                                          rq.zero_point, rq.qmin, rq.qmax);
    }
  }
}

}  // namespace detail

/// x: [n][h][w][c] with g.in.c == w.channels; rq: c channels of requantization; out:
/// [n][out_h][out_w][c] (must not overlap x).
template <class Arch = simd::default_arch>
void depthwise3x3(const std::uint8_t* x, const depthwise_geometry& g, const depthwise_packed& w,
                  const requant_channel_args& rq, std::uint8_t* out) noexcept {
  std::array<detail::tap_pointers, detail::depthwise_chunk> taps;
  for (std::size_t n = 0; n < g.in.n; ++n) {
    for (std::size_t oh = 0; oh < g.out_h; ++oh) {
      for (std::size_t ow0 = 0; ow0 < g.out_w; ow0 += detail::depthwise_chunk) {
        const std::size_t count = std::min(detail::depthwise_chunk, g.out_w - ow0);
        for (std::size_t p = 0; p < count; ++p)
          taps[p] = detail::depthwise_taps(x, g, w.padding.data(), n, oh, ow0 + p);
        std::uint8_t* dst = out + g.out().at(n, oh, ow0);
        const auto* table = taps.data();
        const std::size_t done =
            lanes::for_blocks<std::int32_t, Arch>(0, w.channels, [=, &w, &rq](auto arch, std::size_t c) {
              using A = decltype(arch);
              using i32 = xsimd::batch<std::int32_t, A>;
              if (xsimd::any(i32::load_unaligned(rq.shift + c) < i32(32))) {
                detail::depthwise_block<true, A>(table, count, c, w, rq, dst);
              } else {
                detail::depthwise_block<false, A>(table, count, c, w, rq, dst);
              }
            });
        detail::depthwise_tail(taps.data(), count, done, w, rq, dst);
      }
    }
  }
}

}  // namespace xquant::kernels::int8
XQUANT_SIMD_END
