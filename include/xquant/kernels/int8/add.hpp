#pragma once
// Residual add of two uint8 tensors with rescaling; equals reference::int8::add byte for
// byte (kernels/reference/int8/add.hpp has the integer scheme and its error bound).
//
// One int32 lane per element: the zero points are folded into one constant,
//   p = A a + B b - (A zp_a + B zp_b)                       (pmovzxbd, 2 pmulld, 2 paddd)
// which is the reference's p exactly (every partial sum stays below 2^31 in magnitude),
// then the rounding shift (p + 2^(S-1) + (p >> 31)) >> S, where p >> 31 is -1 for negative
// p (round half away from zero), the output zero point, and a clamped narrowing store.
// The last few elements (fewer than the narrowest batch) use the reference.

#include <cstddef>
#include <cstdint>

#include "xquant/kernels/int8/lanes.hpp"
#include "xquant/kernels/reference/int8/add.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels::int8 {

/// out[i] = reference::int8::add(a[i], b[i], k), i < n; out may be a or b (in place).
template <class Arch = simd::default_arch>
void add(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, const add_params& k, std::uint8_t* out) noexcept {
  // Scalars copied out of k: stores through uint8_t* may alias any object, so members
  // read inside the loop would be reloaded after every store.
  const std::int32_t ma = k.multiplier_a, mb = k.multiplier_b, shift = k.shift;
  const std::int32_t zero_offset = -(ma * k.zero_point_a + mb * k.zero_point_b);
  const std::int32_t half = std::int32_t{1} << (shift - 1);
  const std::int32_t zero_point = k.zero_point, qmin = k.qmin, qmax = k.qmax;
  const std::size_t done = lanes::for_blocks<std::int32_t, Arch>(0, n, [=](auto arch, std::size_t i) {
    using A = decltype(arch);
    using i32 = xsimd::batch<std::int32_t, A>;
    const i32 p = lanes::mul_i32(lanes::load_u8_as_i32<A>(a + i), i32(ma)) +
                  lanes::mul_i32(lanes::load_u8_as_i32<A>(b + i), i32(mb)) + i32(zero_offset);
    const i32 q = (p + i32(half) + (p >> 31)) >> shift;
    simd::store_clamped<std::uint8_t, A>(out + i, q + i32(zero_point), qmin, qmax);
  });
  reference::int8::add(a + done, b + done, n - done, k, out + done);
}

}  // namespace xquant::kernels::int8
XQUANT_SIMD_END
