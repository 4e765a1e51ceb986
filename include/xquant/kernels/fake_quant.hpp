#pragma once
// Fake-quantization kernels over xsimd batches: the forward with its clipped-STE mask, the
// masked gradient (added or copied) and the min/max scan of the observers. The specification is
// reference/fake_quant.hpp; every kernel equals it bit for bit (tested on every compiled-in
// arch the test machine can run). Arch: as in requantize.hpp (the Arch-less call uses
// simd::default_arch, no run-time dispatch).
//
// Rounding. nearbyint is the "magic number" 1.5 * 2^23 of requantize.hpp: for |v| < 2^22,
// (v + 1.5 * 2^23) - 1.5 * 2^23 is v rounded to an integer, half to even (the default mode),
// on every ISA without SSE4.1 roundps. The quotient v = x / scale is first clamped to
// [lo - 1, hi + 1] (|v| <= 65536 then): rounding is monotone and the bounds are integers, so
// the clamped r is clamp(nearbyint(x / scale), lo - 1, hi + 1), which is inside [lo, hi]
// exactly when nearbyint(x / scale) is. Clamping r to [lo, hi] then gives the reference's
// integer, as a float that is never -0.0 (the magic subtraction returns +0.0), so r * scale
// is the reference's float(int32(q)) * scale. An infinite x / scale clamps like the
// reference's; a NaN is detected separately (xsimd::isnan: on AVX-512 xsimd 8.1's
// v != v is an ordered compare, false for NaN) and reported.
//
// Mask bits. A batch's compare result becomes an integer of lane bits (movemask on SSE2 and
// AVX, the mask register itself on AVX-512, a float sum of lane weights elsewhere). The
// kernels work on groups of max(lanes, 8) elements that start on a byte of the mask, so a
// group writes whole bytes; the elements before the first such byte and after the last
// full group go through the reference (which ORs single bits).

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "xquant/kernels/reference/fake_quant.hpp"
#include "xquant/kernels/requant_fold.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels {

namespace fake_quant_detail {

template <class A>
using f32 = simd::batch<float, A>;
template <class A>
using i32 = simd::batch<std::int32_t, A>;
template <class A>
using mask_batch = xsimd::batch_bool<float, A>;

// ---- lane bits <-> batch_bool ----

template <class A>
std::uint64_t lane_bits(mask_batch<A> m, xsimd::generic) noexcept {
  alignas(A::alignment()) float weights[f32<A>::size];
  for (std::size_t j = 0; j < f32<A>::size; ++j) weights[j] = static_cast<float>(std::uint64_t{1} << j);
  // A sum of distinct powers of two below 2^24: exact in float.
  return static_cast<std::uint64_t>(xsimd::hadd(xsimd::select(m, f32<A>::load_aligned(weights), f32<A>(0.0f))));
}
#if XSIMD_WITH_SSE2
template <class A>
std::uint64_t lane_bits(mask_batch<A> m, xsimd::sse2) noexcept {
  return static_cast<std::uint32_t>(_mm_movemask_ps(m));
}
#endif
#if XSIMD_WITH_AVX
template <class A>
std::uint64_t lane_bits(mask_batch<A> m, xsimd::avx) noexcept {
  return static_cast<std::uint32_t>(_mm256_movemask_ps(m));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
std::uint64_t lane_bits(mask_batch<A> m, xsimd::avx512f) noexcept {
  return static_cast<std::uint64_t>(static_cast<__mmask16>(m));
}
#endif

/// Lane j of the result is true when bit j of `bits` is set.
template <class A>
mask_batch<A> lanes_of(std::uint64_t bits, i32<A> lane_bit) noexcept {
  const i32<A> b(static_cast<std::int32_t>(bits & ((std::uint64_t{1} << f32<A>::size) - 1)));
  return xsimd::to_float(b & lane_bit) != f32<A>(0.0f);
}

template <class A>
i32<A> lane_bit_constants() noexcept {
  alignas(A::alignment()) std::int32_t v[i32<A>::size];
  for (std::size_t j = 0; j < i32<A>::size; ++j) v[j] = static_cast<std::int32_t>(1u << j);
  return i32<A>::load_aligned(v);
}

// ---- groups of whole mask bytes ----

/// Elements per group: at least one byte of mask, at least one batch.
template <class A>
inline constexpr std::size_t group = f32<A>::size < 8 ? 8 : f32<A>::size;

/// Elements before the first mask byte boundary at or after bit0 (at most n).
inline std::size_t head_length(std::size_t bit0, std::size_t n) noexcept { return std::min(n, (8 - bit0 % 8) % 8); }

inline void store_bytes(std::uint8_t* dst, std::uint64_t bits, std::size_t bytes) noexcept {
  for (std::size_t b = 0; b < bytes; ++b) dst[b] = static_cast<std::uint8_t>(bits >> (8 * b));
}
inline std::uint64_t load_bytes(const std::uint8_t* src, std::size_t bytes) noexcept {
  std::uint64_t bits = 0;
  for (std::size_t b = 0; b < bytes; ++b) bits |= static_cast<std::uint64_t>(src[b]) << (8 * b);
  return bits;
}

// ---- fake quantization of one batch ----

template <class A>
struct lanes {
  f32<A> scale, lo, hi, lo1, hi1;
  explicit lanes(const fake_quant_args& a) noexcept
      : scale(a.scale), lo(a.lo), hi(a.hi), lo1(a.lo - 1.0f), hi1(a.hi + 1.0f) {}
};

/// y of one batch; `inside` receives the mask lanes.
template <class A>
f32<A> fake_quant_batch(f32<A> x, const lanes<A>& k, mask_batch<A>& inside) noexcept {
  const f32<A> v = xsimd::min(xsimd::max(x / k.scale, k.lo1), k.hi1);
  const f32<A> r = (v + f32<A>(float_magic)) - f32<A>(float_magic);
  inside = (r >= k.lo) & (r <= k.hi);
  return xsimd::min(xsimd::max(r, k.lo), k.hi) * k.scale;
}

template <class A, bool Mask>
bool fake_quant_run(const float* x, std::size_t n, const fake_quant_args& a, float* y, std::uint8_t* mask,
                    std::size_t bit0) noexcept {
  constexpr std::size_t width = f32<A>::size;
  constexpr std::size_t g = Mask ? group<A> : width;
  const std::size_t head = Mask ? head_length(bit0, n) : 0;
  bool nan = reference::fake_quant(x, head, a, y, mask, bit0);
  const lanes<A> k(a);
  mask_batch<A> any_nan(false);
  std::size_t i = head;
  for (; i + g <= n; i += g) {
    std::uint64_t bits = 0;
    for (std::size_t j = 0; j < g; j += width) {
      const f32<A> v = f32<A>::load_unaligned(x + i + j);
      mask_batch<A> inside;
      fake_quant_batch(v, k, inside).store_unaligned(y + i + j);
      any_nan = any_nan | xsimd::isnan(v);
      if constexpr (Mask) bits |= lane_bits<A>(inside, A{}) << j;
    }
    if constexpr (Mask) store_bytes(mask + (bit0 + i) / 8, bits, g / 8);
  }
  nan = reference::fake_quant(x + i, n - i, a, y + i, mask, bit0 + i) || nan;
  return xsimd::any(any_nan) || nan;
}

}  // namespace fake_quant_detail

/// y[i] = reference::fake_quant of x[i], i < n; with a mask (zeroed by the caller), its bits
/// [bit0, bit0 + n) are set where inside. Returns true when x contains a NaN.
template <class Arch = simd::default_arch>
bool fake_quant(const float* x, std::size_t n, const fake_quant_args& a, float* y, std::uint8_t* mask = nullptr,
                std::size_t bit0 = 0) noexcept {
  // Equals reference::fake_quant bit for bit.
  return mask ? fake_quant_detail::fake_quant_run<Arch, true>(x, n, a, y, mask, bit0)
              : fake_quant_detail::fake_quant_run<Arch, false>(x, n, a, y, nullptr, 0);
}

namespace fake_quant_detail {

/// The masked gradient kernels: Add selects dx + dy or dx, else 0 + dy or 0.
template <class A, bool Add>
void masked_grad(const float* dy, std::size_t n, const std::uint8_t* mask, std::size_t bit0, float* dx) noexcept {
  constexpr std::size_t width = f32<A>::size;
  constexpr std::size_t g = group<A>;
  const std::size_t head = head_length(bit0, n);
  const auto tail = [&](std::size_t i, std::size_t count) {
    if constexpr (Add) {
      reference::masked_add(dy + i, count, mask, bit0 + i, dx + i);
    } else {
      reference::masked_copy(dy + i, count, mask, bit0 + i, dx + i);
    }
  };
  tail(0, head);
  const i32<A> lane_bit = lane_bit_constants<A>();
  const f32<A> zero(0.0f);
  std::size_t i = head;
  for (; i + g <= n; i += g) {
    const std::uint64_t bits = load_bytes(mask + (bit0 + i) / 8, g / 8);
    for (std::size_t j = 0; j < g; j += width) {
      const f32<A> d = f32<A>::load_unaligned(dy + i + j);
      const f32<A> acc = Add ? f32<A>::load_unaligned(dx + i + j) : zero;
      xsimd::select(lanes_of<A>(bits >> j, lane_bit), acc + d, acc).store_unaligned(dx + i + j);
    }
  }
  tail(i, n - i);
}

}  // namespace fake_quant_detail

/// dx[i] += dy[i] where mask bit (bit0 + i) is set, i < n.
template <class Arch = simd::default_arch>
void masked_add(const float* dy, std::size_t n, const std::uint8_t* mask, std::size_t bit0, float* dx) noexcept {
  // Equals reference::masked_add bit for bit (a lane outside the mask keeps dx, even -0.0).
  fake_quant_detail::masked_grad<Arch, true>(dy, n, mask, bit0, dx);
}

/// dx[i] = 0.0f + dy[i] where mask bit (bit0 + i) is set, else 0.0f, i < n.
template <class Arch = simd::default_arch>
void masked_copy(const float* dy, std::size_t n, const std::uint8_t* mask, std::size_t bit0, float* dx) noexcept {
  // Equals reference::masked_copy bit for bit.
  fake_quant_detail::masked_grad<Arch, false>(dy, n, mask, bit0, dx);
}

/// Widens [lo, hi] to the values of x[0, n); returns true when x contains a NaN.
template <class Arch = simd::default_arch>
bool min_max(const float* x, std::size_t n, float& lo, float& hi) noexcept {
  // Equals reference::min_max (values compare equal; see there for the sign of zeros).
  using namespace fake_quant_detail;
  constexpr std::size_t width = f32<Arch>::size;
  constexpr std::size_t unroll = 4;  // independent min/max chains
  const std::size_t full = n - n % (width * unroll);
  f32<Arch> lo_b[unroll], hi_b[unroll];
  mask_batch<Arch> nan(false);
  for (std::size_t u = 0; u < unroll; ++u) {
    lo_b[u] = f32<Arch>(lo);
    hi_b[u] = f32<Arch>(hi);
  }
  for (std::size_t i = 0; i < full; i += width * unroll) {
    for (std::size_t u = 0; u < unroll; ++u) {
      const f32<Arch> v = f32<Arch>::load_unaligned(x + i + u * width);
      nan = nan | xsimd::isnan(v);
      lo_b[u] = xsimd::min(lo_b[u], v);
      hi_b[u] = xsimd::max(hi_b[u], v);
    }
  }
  alignas(Arch::alignment()) float l[width], h[width];
  for (std::size_t u = 1; u < unroll; ++u) {
    lo_b[0] = xsimd::min(lo_b[0], lo_b[u]);
    hi_b[0] = xsimd::max(hi_b[0], hi_b[u]);
  }
  lo_b[0].store_aligned(l);
  hi_b[0].store_aligned(h);
  for (std::size_t j = 0; j < width; ++j) {
    lo = std::min(lo, l[j]);
    hi = std::max(hi, h[j]);
  }
  const bool tail_nan = reference::min_max(x + full, n - full, lo, hi);
  return xsimd::any(nan) || tail_nan;
}

}  // namespace xquant::kernels
XQUANT_SIMD_END
