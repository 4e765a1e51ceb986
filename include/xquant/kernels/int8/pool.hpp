#pragma once
// Pooling on uint8 NHWC activations; equals reference::int8::max_pool2x2 and
// global_avg_pool byte for byte (kernels/reference/int8/pool.hpp has the arithmetic).
//
// Max pool: per output pixel, the four input pixels' channel vectors are combined with
// unsigned byte max (pmaxub), a batch of channels at a time, narrower batches for the
// channels past the last full one (lanes::for_blocks: 32 channels on AVX-512 are one AVX2
// batch, not 32 scalar ones), scalar for the rest.
//
// Global average pool: per image and batch of channels, int32 lanes sum the widened bytes
// of every pixel; the centred sum goes through the fixed-point requantization lanes of
// kernels/requantize.hpp (the same code as requantize_fixed, so the same bits).

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "xquant/kernels/int8/lanes.hpp"
#include "xquant/kernels/reference/int8/pool.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/requantize.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8 {

namespace detail {

/// Output pixel of a 2x2 max pool: a is the top-left input pixel, row the input row length.
template <class Arch>
void max_pool_pixel(const std::uint8_t* a, std::size_t channels, std::size_t row, std::uint8_t* out) noexcept {
  const std::uint8_t* b = a + channels;
  const std::uint8_t* c = a + row;
  const std::uint8_t* d = c + channels;
  const std::size_t done = lanes::for_blocks<std::uint8_t, Arch>(0, channels, [=](auto arch, std::size_t i) {
    using u8 = xsimd::batch<std::uint8_t, decltype(arch)>;
    const u8 top = lanes::max_u8(u8::load_unaligned(a + i), u8::load_unaligned(b + i));
    const u8 bottom = lanes::max_u8(u8::load_unaligned(c + i), u8::load_unaligned(d + i));
    lanes::max_u8(top, bottom).store_unaligned(out + i);
  });
  for (std::size_t i = done; i < channels; ++i) out[i] = std::max(std::max(a[i], b[i]), std::max(c[i], d[i]));
}

/// Channels [c, c + batch) of image n: the centred sum, requantized.
template <bool Clamp, class A>
void average_block(const std::uint8_t* image, const global_avg_pool_params& p, std::size_t c,
                   std::uint8_t* out) noexcept {
  using i32 = xsimd::batch<std::int32_t, A>;
  const std::size_t pixels = p.in.h * p.in.w;
  i32 sum(0);
  for (std::size_t i = 0; i < pixels; ++i) sum += lanes::load_u8_as_i32<A>(image + i * p.in.c + c);
  const i32 acc = sum - i32(static_cast<std::int32_t>(pixels) * p.input_zero_point);
  const auto k = kernels::detail::fixed_lanes_of<A>(p.requant);
  simd::store_clamped<std::uint8_t, A>(out + c, kernels::detail::fixed_batch<Clamp>(acc, k), p.requant.qmin,
                                       p.requant.qmax);
}

}  // namespace detail

/// x: in = [n][h][w][c], h and w >= 2 (max_pool2x2_output); out: [n][h / 2][w / 2][c].
template <class Arch = simd::default_arch>
void max_pool2x2(const std::uint8_t* x, const nhwc_shape& in, std::uint8_t* out) noexcept {
  const nhwc_shape o{in.n, in.h / 2, in.w / 2, in.c};
  for (std::size_t n = 0; n < o.n; ++n) {
    for (std::size_t oh = 0; oh < o.h; ++oh) {
      for (std::size_t ow = 0; ow < o.w; ++ow) {
        detail::max_pool_pixel<Arch>(x + in.at(n, 2 * oh, 2 * ow), in.c, in.w * in.c, out + o.at(n, oh, ow));
      }
    }
  }
}

/// x: p.in = [n][h][w][c]; out: [n][c].
template <class Arch = simd::default_arch>
void global_avg_pool(const std::uint8_t* x, const global_avg_pool_params& p, std::uint8_t* out) noexcept {
  const std::size_t pixels = p.in.h * p.in.w;
  const bool clamp = p.requant.shift < 32;  // see kernels/requantize.hpp
  for (std::size_t n = 0; n < p.in.n; ++n) {
    const std::uint8_t* image = x + n * pixels * p.in.c;
    std::uint8_t* row = out + n * p.in.c;
    const std::size_t done = lanes::for_blocks<std::int32_t, Arch>(0, p.in.c, [=, &p](auto arch, std::size_t c) {
      using A = decltype(arch);
      if (clamp) {
        detail::average_block<true, A>(image, p, c, row);
      } else {
        detail::average_block<false, A>(image, p, c, row);
      }
    });
    for (std::size_t c = done; c < p.in.c; ++c) {
      std::int32_t sum = 0;
      for (std::size_t i = 0; i < pixels; ++i) sum += image[i * p.in.c + c];
      const std::int32_t acc = sum - static_cast<std::int32_t>(pixels) * p.input_zero_point;
      row[c] = reference::requantize_fixed<std::uint8_t>(acc, p.requant.multiplier, p.requant.shift,
                                                         p.requant.zero_point, p.requant.qmin, p.requant.qmax);
    }
  }
}

}  // namespace xquant::kernels::int8
XQUANT_SIMD_END
