#pragma once
// Channel concatenation of uint8 NHWC tensors; equals reference::int8::concat byte for byte
// (kernels/reference/int8/concat.hpp has the integer scheme and its error bound).
//
// Per pixel and input: a plain memcpy when the input is already on the output grid (the
// common case: a network that shares one quantizer across the concatenated branches), else
// the add kernel's single-term arithmetic on int32 lanes,
//   q = (A x - A zp_x + 2^(S-1) + (p >> 31)) >> S,
// which is the reference's rounding (p >> 31 is -1 for negative p: half away from zero).
// Channels left over after the narrowest batch use the reference.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "xquant/kernels/int8/lanes.hpp"
#include "xquant/kernels/reference/int8/concat.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8 {

/// out[i] = reference::int8::rescale(x[i], k), i < n.
template <class Arch = simd::default_arch>
void rescale(const std::uint8_t* x, std::size_t n, const rescale_params& k, std::uint8_t* out) noexcept {
  if (k.is_copy()) {
    std::memcpy(out, x, n);
    return;
  }
  // Scalars copied out of k: stores through uint8_t* may alias any object.
  const std::int32_t multiplier = k.multiplier, shift = k.shift;
  const std::int32_t zero_offset = -multiplier * k.zero_point_in;
  const std::int32_t half = std::int32_t{1} << (shift - 1);
  const std::int32_t zero_point = k.zero_point, qmin = k.qmin, qmax = k.qmax;
  const std::size_t done = lanes::for_blocks<std::int32_t, Arch>(0, n, [=](auto arch, std::size_t i) {
    using A = decltype(arch);
    using i32 = xsimd::batch<std::int32_t, A>;
    const i32 p = lanes::mul_i32(lanes::load_u8_as_i32<A>(x + i), i32(multiplier)) + i32(zero_offset);
    const i32 q = (p + i32(half) + (p >> 31)) >> shift;
    simd::store_clamped<std::uint8_t, A>(out + i, q + i32(zero_point), qmin, qmax);
  });
  reference::int8::rescale(x + done, n - done, k, out + done);
}

/// reference::int8::concat: `pixels` pixels of every input concatenated along the channels.
template <class Arch = simd::default_arch>
void concat(std::span<const concat_input> inputs, std::size_t pixels, std::uint8_t* out) noexcept {
  for (std::size_t p = 0; p < pixels; ++p) {
    for (const concat_input& in : inputs) {
      rescale<Arch>(in.data + p * in.channels, in.channels, in.k, out);
      out += in.channels;
    }
  }
}

}  // namespace xquant::kernels::int8
XQUANT_SIMD_END
