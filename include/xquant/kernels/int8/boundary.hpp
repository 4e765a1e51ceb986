#pragma once
// float <-> uint8 conversions at the network's edges; equal reference::int8::
// quantize_nchw_to_nhwc and dequantize bit for bit (kernels/reference/int8/boundary.hpp has
// the formulas).
//
// Quantize, vectorised over the pixels of one channel plane (contiguous in NCHW): a float
// division (divps: correctly rounded like the scalar x / scale), the clamp to
// [-zp, 255 - zp] in float, then round half to even with the "magic number" 1.5 * 2^23:
// for |y| < 2^22, y + 1.5 * 2^23 rounds y to an integer n in the default rounding mode and
// the sum's bits are bits(1.5 * 2^23) + n, so one integer subtraction also adds the zero
// point (the trick of kernels/requantize.hpp). Clamping first keeps |y| <= 255 and gives the
// same result as rounding first, because the bounds are integers. max(y, lo) returns lo for
// a NaN y on x86; NaNs are detected separately (xsimd::isnan: an unordered compare; xsimd 8.1's
// v != v is an ordered compare on AVX and misses them) for the return value. For one
// channel (a grey image) the bytes of a batch are stored as they are; otherwise they are
// scattered to their NHWC positions, C apart. Pixels past the last full batch use the
// reference.
//
// Dequantize: widen, subtract the zero point, convert (exact: |q - zp| <= 255), multiply.
// No add follows the multiply, so FMA contraction cannot change the rounding.

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "xquant/kernels/int8/lanes.hpp"
#include "xquant/kernels/reference/int8/boundary.hpp"
#include "xquant/kernels/requant_fold.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8 {

namespace detail {

/// Quantizes the batch of floats at x; sets nan when one is NaN.
template <class A>
xsimd::batch<std::int32_t, A> quantize_batch(const float* x, const activation_quant& q, bool& nan) noexcept {
  using f32 = xsimd::batch<float, A>;
  const f32 v = f32::load_unaligned(x);
  nan = nan || xsimd::any(xsimd::isnan(v));
  const f32 y = xsimd::min(xsimd::max(v / f32(q.scale), f32(static_cast<float>(-q.zero_point))),
                           f32(static_cast<float>(255 - q.zero_point)));
  return xsimd::bitwise_cast<xsimd::batch<std::int32_t, A>>(y + f32(float_magic)) -
         xsimd::batch<std::int32_t, A>(float_magic_bits - q.zero_point);
}

}  // namespace detail

/// x: float [s.n][s.c][s.h][s.w] (NCHW); out: uint8 [s.n][s.h][s.w][s.c] (NHWC). Returns
/// false if x holds a NaN (that element's byte is unspecified).
template <class Arch = simd::default_arch>
bool quantize_nchw_to_nhwc(const float* x, const nhwc_shape& s, const activation_quant& q, std::uint8_t* out) noexcept {
  const activation_quant k = q;  // a local copy: stores through uint8_t* may alias q
  const std::size_t plane = s.h * s.w, channels = s.c;
  bool nan = false;
  for (std::size_t n = 0; n < s.n; ++n) {
    std::uint8_t* image = out + n * plane * channels;
    for (std::size_t c = 0; c < channels; ++c) {
      const float* src = x + (n * channels + c) * plane;
      const std::size_t done = lanes::for_blocks<float, Arch>(0, plane, [=, &nan](auto arch, std::size_t i) {
        using A = decltype(arch);
        const auto v = detail::quantize_batch<A>(src + i, k, nan);
        if (channels == 1) {
          simd::store_narrow<std::uint8_t, A>(image + i, v);
          return;
        }
        alignas(64) std::uint8_t bytes[64];
        simd::store_narrow<std::uint8_t, A>(bytes, v);
        for (std::size_t j = 0; j < xsimd::batch<float, A>::size; ++j) image[(i + j) * channels + c] = bytes[j];
      });
      for (std::size_t i = done; i < plane; ++i) {
        nan = nan || std::isnan(src[i]);
        image[i * channels + c] = std::isnan(src[i]) ? std::uint8_t{0} : reference::int8::quantize(src[i], k);
      }
    }
  }
  return !nan;
}

/// out[i] = reference::int8::dequantize(v[i]), i < n (e.g. the logits [n][c], n * c values).
template <class Arch = simd::default_arch>
void dequantize(const std::uint8_t* v, std::size_t n, const activation_quant& q, float* out) noexcept {
  const float scale = q.scale;  // local copies: stores through float* may alias q
  const std::int32_t zero_point = q.zero_point;
  const std::size_t done = lanes::for_blocks<std::int32_t, Arch>(0, n, [=](auto arch, std::size_t i) {
    using A = decltype(arch);
    using i32 = xsimd::batch<std::int32_t, A>;
    const auto real = xsimd::to_float(lanes::load_u8_as_i32<A>(v + i) - i32(zero_point));
    (real * xsimd::batch<float, A>(scale)).store_unaligned(out + i);
  });
  reference::int8::dequantize(v + done, n - done, q, out + done);
}

}  // namespace xquant::kernels::int8
XQUANT_SIMD_END
