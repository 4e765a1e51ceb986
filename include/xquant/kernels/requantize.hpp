#pragma once
// Requantization kernels over xsimd batches: int32 accumulators -> int8 / uint8 / int16.
// The specification, its rounding rules and the reasons for them are in
// reference/requantize.hpp; every kernel here equals its reference bit for bit (tested on
// every compiled-in arch the test machine can run) and finishes the tail with it.
//
// Arch. Each kernel is a template on the xsimd arch; the Arch-less call uses
// simd::default_arch, the best instruction set *compiled in*. There is no run-time dispatch:
// a header-only library cannot put AVX-512 code into a translation unit compiled without
// -mavx512f. An application that wants one binary for several CPUs compiles one TU per arch
// (each with its flags, instantiating the kernel for that arch) and picks one with
// xsimd::dispatch or simd::available<Arch>().
//
// Fixed-point in SIMD. The kernel rounds |acc| and puts the sign back, which the reference
// allows (round half away from zero is odd-symmetric). The 32x32 -> 64-bit products come from
// pmuludq-style multiplies of the even lanes and of the odd lanes shifted down, the rounding
// is one 64-bit add and shift, and the two halves are re-interleaved as 32-bit lanes. That
// needs every rounded magnitude q below 2^31: for shift >= 32, |p| < 2^62 gives q <= 2^30.
// For shift s < 32 (scale >= 1/2) |acc| is first clamped to 2^(s-1); every |acc| >= 2^(s-1)
// rounds to q >= (multiplier + 1) / 2 >= 2^29, which saturates the output whatever the
// clamp bounds (they span at most 2^16), so clamping does not change any output, and the
// clamped q <= 2^30. q + zero_point then fits in int32; simd::store_clamped clamps it to
// [qmin, qmax] and narrows it (on SSE2/AVX2 after a saturating pack to int16, where min/max
// is one instruction).
//
// Float in SIMD. nearbyint is done with the "magic number" 1.5 * 2^23: for |y| < 2^22,
// y + 1.5 * 2^23 rounds y to an integer n (half to even, the default mode) and the bits of the
// sum are bits(1.5 * 2^23) + n, so one integer subtraction also adds the zero point. After
// the clamp |y| <= 65535, so this is exactly nearbyint, on every ISA, without SSE4.1 roundps.
// The clamp sits between the multiply and the add, so no compiler can fuse them into an FMA
// (GCC contracts by default in C++) and change the rounding.
//
// Per channel, the float kernel walks acc[row][channel] row by row, loading the scales of
// each batch of channels; the fixed-point kernel derives more constants per channel (shift
// counts, rounding bias, clamp limit), so it walks tiles of 16 rows and, inside a tile, one
// batch-wide block of channels at a time for all the tile's rows. Channels past the last full
// batch use the reference.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/requant_fold.hpp"
#include "xquant/kernels/simd.hpp"

XQUANT_SIMD_BEGIN
namespace xquant::kernels {

namespace detail {

template <class A>
using i32 = simd::batch<std::int32_t, A>;
template <class A>
using u32 = simd::batch<std::uint32_t, A>;
template <class A>
using u64 = simd::batch<std::uint64_t, A>;
template <class A>
using f32 = simd::batch<float, A>;

// ---- fixed point ----

/// Constants of the fixed-point path. Shift is int (one count for all lanes, per tensor) or
/// u64<A> (one count per 64-bit lane, per channel). "even"/"odd" are the 32-bit lanes
/// 0, 2, 4... and 1, 3, 5..., each held in the low half of a 64-bit lane.
template <class A, class Shift>
struct fixed_lanes {
  u32<A> limit;                 // |acc| is clamped to 2^min(s-1, 31)
  u64<A> mul_even, mul_odd;     // multiplier
  u64<A> bias_even, bias_odd;   // 2^(s-1)
  Shift shift_even, shift_odd;  // s = min(shift, 63)
  i32<A> zero_point;
};

template <class A>
fixed_lanes<A, int> fixed_lanes_of(const requant_args& a) noexcept {
  const int s = std::min<int>(a.shift, 63);
  const u64<A> mul(static_cast<std::uint64_t>(a.multiplier));
  const u64<A> bias(std::uint64_t{1} << (s - 1));
  const u32<A> limit(std::uint32_t{1} << std::min(s - 1, 31));
  return {limit, mul, mul, bias, bias, s, s, i32<A>(a.zero_point)};
}

template <class A>
fixed_lanes<A, u64<A>> fixed_lanes_at(const requant_channel_args& a, std::size_t c) noexcept {
  const i32<A> s = xsimd::min(i32<A>::load_unaligned(a.shift + c), i32<A>(63));
  const u64<A> s64 = xsimd::bitwise_cast<u64<A>>(s);
  const u64<A> s_even = s64 & u64<A>(0xFFFFFFFFu);
  const u64<A> s_odd = s64 >> 32;
  const u64<A> top(std::uint64_t{1} << 63);
  const u64<A> mul = xsimd::bitwise_cast<u64<A>>(i32<A>::load_unaligned(a.multiplier + c));
  const u32<A> limit_shift = xsimd::bitwise_cast<u32<A>>(i32<A>(32) - xsimd::min(s, i32<A>(32)));
  return {
      u32<A>(0x80000000u) >> limit_shift,       mul,    mul >> 32, simd::srl_lanes(top, u64<A>(64) - s_even),
      simd::srl_lanes(top, u64<A>(64) - s_odd), s_even, s_odd,     i32<A>(a.zero_point)};
}

/// One batch of reference::requantize_fixed before the clamp: round(acc * scale) + zero point
/// (|round(acc * scale)| <= 2^30 here, so the int32 sum cannot overflow).
template <bool Clamp, class A, class Shift>
XQUANT_SIMD_INLINE i32<A> fixed_batch(i32<A> acc, const fixed_lanes<A, Shift>& k) noexcept {
  const u32<A> sign = xsimd::bitwise_cast<u32<A>>(acc >> 31);     // all ones where acc < 0
  u32<A> mag = (xsimd::bitwise_cast<u32<A>>(acc) ^ sign) - sign;  // |acc| (2^31 for INT32_MIN)
  if constexpr (Clamp) mag = xsimd::min(mag, k.limit);
  const u64<A> even = xsimd::bitwise_cast<u64<A>>(mag);
  const u64<A> odd = even >> 32;
  const u64<A> q_even = simd::srl_lanes(simd::mul_even_u32(even, k.mul_even) + k.bias_even, k.shift_even);
  const u64<A> q_odd = simd::srl_lanes(simd::mul_even_u32(odd, k.mul_odd) + k.bias_odd, k.shift_odd);
  const u32<A> q = xsimd::bitwise_cast<u32<A>>(q_even | (q_odd << 32));
  return xsimd::bitwise_cast<i32<A>>((q ^ sign) - sign) + k.zero_point;
}

/// The fixed-point batch step at element i: load, round, clamp, narrow, store.
template <bool Clamp, class A, class Shift, class Out>
auto fixed_step(const std::int32_t* acc, Out* out, const fixed_lanes<A, Shift>& k, int qmin,
                int qmax) noexcept {
  return [=, &k](std::size_t i) {
    simd::store_clamped<Out, A>(out + i, fixed_batch<Clamp>(i32<A>::load_unaligned(acc + i), k), qmin, qmax);
  };
}

// ---- folded fixed point (requant_fold.hpp) ----

/// Folded constants of up to N channels, each quantity's even and odd channels apart (the
/// even/odd 32-bit lanes of fixed_lanes), so that a batch of any width at an even channel
/// offset loads its lanes with plain vector loads.
template <std::size_t N>
struct folded_channels {
  static_assert(N % 2 == 0);
  alignas(64) std::int64_t values[6][N / 2];  // multiplier, addend, shift: even, then odd channels

  /// Folds channels c0 .. c0 + count - 1 of rq (count <= N; bias may be null: zeros) into
  /// entries 0 .. count - 1, the rest the default 0 * acc + 0; false as soon as one
  /// channel does not fold.
  bool fold(const requant_channel_args& rq, const std::int32_t* bias, const std::int64_t* bound, std::size_t c0,
            std::size_t count) noexcept {
    for (std::size_t i = 0; i < N; ++i) {
      folded_requant f;
      if (i < count) {
        const auto one = fold_requant(rq.multiplier[c0 + i], rq.shift[c0 + i], bias ? bias[c0 + i] : 0,
                                      bound[c0 + i], rq.zero_point);
        if (!one) return false;
        f = *one;
      }
      set(i, f);
    }
    return true;
  }

  /// Entry i (< N).
  void set(std::size_t i, const folded_requant& f) noexcept {
    values[0 + i % 2][i / 2] = f.multiplier;
    values[2 + i % 2][i / 2] = f.addend;
    values[4 + i % 2][i / 2] = f.shift;
  }
};

/// The folded requantization of one batch of channels, its constants held as values (so
/// that they live in registers where a kernel keeps a copy for a loop).
template <class A>
struct folded_lanes {
  u64<A> mul_even, mul_odd, add_even, add_odd, shift_even, shift_odd;

  folded_lanes() = default;
  /// Channels offset .. offset + i32<A>::size - 1 of f (offset even).
  template <std::size_t N>
  folded_lanes(const folded_channels<N>& f, std::size_t offset) noexcept
      : mul_even(at(f.values[0], offset)), mul_odd(at(f.values[1], offset)), add_even(at(f.values[2], offset)),
        add_odd(at(f.values[3], offset)), shift_even(at(f.values[4], offset)), shift_odd(at(f.values[5], offset)) {}

  /// folded_round of each lane, before the clamp: two pmuldq, two 64-bit adds, two
  /// arithmetic shifts and an interleave (~8 instructions per 16 outputs on AVX-512,
  /// against fixed_batch's ~17).
  XQUANT_SIMD_INLINE i32<A> operator()(i32<A> acc) const noexcept {
    const u64<A> even = xsimd::bitwise_cast<u64<A>>(acc);
    const u64<A> odd = even >> 32;
    const u64<A> q_even = simd::sra_lanes(simd::mul_even_i32(even, mul_even) + add_even, shift_even);
    const u64<A> q_odd = simd::sra_lanes(simd::mul_even_i32(odd, mul_odd) + add_odd, shift_odd);
    return simd::interleave_low_halves(q_even, q_odd);
  }

 private:
  static u64<A> at(const std::int64_t* v, std::size_t offset) noexcept {
    return u64<A>::load_unaligned(reinterpret_cast<const std::uint64_t*>(v) + offset / 2);
  }
};

/// Channels folded into float constants (requant_fold.hpp, fold_float_requant).
template <std::size_t N>
struct float_folded_channels {
  alignas(64) std::int32_t bias[N];
  alignas(64) float scale[N];
  alignas(64) float offset[N];

  /// Folds channels c0 .. c0 + count - 1 of rq (count <= N; bias may be null: zeros) into
  /// entries 0 .. count - 1, the rest 0 * acc + float_magic (q = 0); false as soon as one
  /// channel does not fold, or in a rounding mode other than to nearest.
  bool fold(const requant_channel_args& rq, const std::int32_t* b, const std::int64_t* bound, std::size_t c0,
            std::size_t count) noexcept {
    if (!float_rounding_is_nearest()) return false;
    for (std::size_t i = 0; i < N; ++i) {
      float_folded_requant f{0, 0.0f, float_magic};
      if (i < count) {
        const auto one = fold_float_requant(rq.multiplier[c0 + i], rq.shift[c0 + i], b ? b[c0 + i] : 0,
                                            bound[c0 + i], rq.zero_point);
        if (!one) return false;
        f = *one;
      }
      bias[i] = f.bias;
      scale[i] = f.scale;
      offset[i] = f.offset;
    }
    return true;
  }
};

/// The float-folded requantization of one batch of channels, constants held as values.
/// Only for archs with a hardware FMA (simd::has_fused_multiply_add).
template <class A>
struct float_folded_lanes {
  i32<A> bias;
  f32<A> scale, offset;

  float_folded_lanes() = default;
  /// Channels offset .. offset + i32<A>::size - 1 of f.
  template <std::size_t N>
  float_folded_lanes(const float_folded_channels<N>& f, std::size_t at) noexcept
      : bias(i32<A>::load_unaligned(f.bias + at)),
        scale(f32<A>::load_unaligned(f.scale + at)),
        offset(f32<A>::load_unaligned(f.offset + at)) {}

  /// float_magic + round(acc' * scale) + zero_point as a float (exact inside the uint8 range,
  /// beyond it on the same side): an int32 add, a conversion and an FMA.
  XQUANT_SIMD_INLINE f32<A> operator()(i32<A> acc) const noexcept {
    return simd::fused_multiply_add(xsimd::to_float(acc + bias), scale, offset);
  }

  /// The same as an int32 before the clamp: round(acc' * scale) + zero_point where that is
  /// inside [-2^22, 2^22], beyond it on the same side (requant_fold.hpp), which a clamp to
  /// any uint8 range turns into the specification's output.
  XQUANT_SIMD_INLINE i32<A> rounded(i32<A> acc) const noexcept {
    return xsimd::bitwise_cast<i32<A>>((*this)(acc)) - i32<A>(float_magic_bits);
  }
};

/// Clamps y (from float_folded_lanes) to the uint8 range [lo, hi] and stores the first
/// `valid` results (all when valid >= the batch size) at out.
template <class A>
struct float_folded_store {
  f32<A> lo, hi;  // float_magic + the clamp bounds

  float_folded_store(int qmin, int qmax) noexcept
      : lo(float_magic + static_cast<float>(qmin)), hi(float_magic + static_cast<float>(qmax)) {}

  /// All lanes.
  XQUANT_SIMD_INLINE void operator()(std::uint8_t* out, f32<A> y) const noexcept {
    // The clamped float's bits are float_magic_bits + q, q in [0, 255]: its low byte is q.
    simd::store_low_bytes<A>(out, xsimd::bitwise_cast<i32<A>>(xsimd::min(xsimd::max(y, lo), hi)));
  }
  /// The first `valid` lanes (all when valid >= the batch size).
  XQUANT_SIMD_INLINE void operator()(std::uint8_t* out, f32<A> y, std::size_t valid) const noexcept {
    if (valid >= i32<A>::size) return (*this)(out, y);
    std::uint8_t tmp[64];
    (*this)(tmp, y);
    std::memcpy(out, tmp, valid);
  }
};

// ---- float ----

template <class A>
struct float_lanes {
  f32<A> scale, lo, hi;  // lo, hi = qmin - zero_point, qmax - zero_point
  i32<A> offset;         // float_magic_bits - zero_point
};

template <class A>
float_lanes<A> float_lanes_of(float scale, std::int32_t zero_point, std::int32_t qmin,
                              std::int32_t qmax) noexcept {
  return {f32<A>(scale), f32<A>(static_cast<float>(qmin - zero_point)),
          f32<A>(static_cast<float>(qmax - zero_point)), i32<A>(float_magic_bits - zero_point)};
}

/// One batch of reference::requantize_float (already clamped).
template <class A>
i32<A> float_batch(i32<A> acc, const float_lanes<A>& k) noexcept {
  const f32<A> y = xsimd::min(xsimd::max(xsimd::to_float(acc) * k.scale, k.lo), k.hi);
  return xsimd::bitwise_cast<i32<A>>(y + f32<A>(float_magic)) - k.offset;
}

// ---- loops ----

/// Calls step(i) for each full batch [i, i + width) of [0, n); returns how many elements
/// that covered (the caller finishes the tail with the reference).
template <class A, class Step>
std::size_t for_batches(std::size_t n, Step step) noexcept {
  constexpr std::size_t width = i32<A>::size;
  const std::size_t full = n - n % width;
  for (std::size_t i = 0; i < full; i += width) step(i);
  return full;
}

/// Calls element(i, c) for the flat index i of every element of rows [r0, r1) and channels
/// [c0, channels): the columns left over after the last full batch.
template <class Element>
void channel_tail(std::size_t r0, std::size_t r1, std::size_t channels, std::size_t c0,
                  Element element) noexcept {
  for (std::size_t r = r0; r < r1; ++r) {
    for (std::size_t c = c0; c < channels; ++c) element(r * channels + c, c);
  }
}

}  // namespace detail

/// out[i] = reference::requantize_fixed(acc[i]), i < n.
template <class Arch = simd::default_arch, narrow_integer Out>
void requantize_fixed(const std::int32_t* acc, std::size_t n, const requant_args& args, Out* out) noexcept {
  // Equals reference::requantize_fixed bit for bit.
  const auto k = detail::fixed_lanes_of<Arch>(args);
  const std::size_t done =
      args.shift < 32
          ? detail::for_batches<Arch>(n, detail::fixed_step<true>(acc, out, k, args.qmin, args.qmax))
          : detail::for_batches<Arch>(n, detail::fixed_step<false>(acc, out, k, args.qmin, args.qmax));
  reference::requantize_fixed(acc + done, n - done, args, out + done);
}

/// out[i] = reference::requantize_float(acc[i]), i < n.
template <class Arch = simd::default_arch, narrow_integer Out>
void requantize_float(const std::int32_t* acc, std::size_t n, const requant_args& args, Out* out) noexcept {
  // Equals reference::requantize_float bit for bit.
  const auto k = detail::float_lanes_of<Arch>(args.scale, args.zero_point, args.qmin, args.qmax);
  const std::size_t done = detail::for_batches<Arch>(n, [&](std::size_t i) {
    simd::store_narrow<Out, Arch>(out + i,
                                  detail::float_batch(detail::i32<Arch>::load_unaligned(acc + i), k));
  });
  reference::requantize_float(acc + done, n - done, args, out + done);
}

/// acc, out: [rows][channels], channel innermost; channel c uses multiplier[c], shift[c].
template <class Arch = simd::default_arch, narrow_integer Out>
void requantize_fixed_per_channel(const std::int32_t* acc, std::size_t rows, std::size_t channels,
                                  const requant_channel_args& args, Out* out) noexcept {
  // Equals reference::requantize_fixed_per_channel bit for bit.
  constexpr std::size_t tile = 16;
  for (std::size_t r0 = 0; r0 < rows; r0 += tile) {
    const std::size_t r1 = std::min(rows, r0 + tile);
    const std::size_t done = detail::for_batches<Arch>(channels, [&](std::size_t c) {
      const auto k = detail::fixed_lanes_at<Arch>(args, c);
      const auto rows_of_block = [&](auto step) {
        for (std::size_t r = r0; r < r1; ++r) step(r * channels + c);
      };
      if (xsimd::any(detail::i32<Arch>::load_unaligned(args.shift + c) < detail::i32<Arch>(32))) {
        rows_of_block(detail::fixed_step<true>(acc, out, k, args.qmin, args.qmax));
      } else {
        rows_of_block(detail::fixed_step<false>(acc, out, k, args.qmin, args.qmax));
      }
    });
    detail::channel_tail(r0, r1, channels, done, [&](std::size_t i, std::size_t c) {
      out[i] = reference::requantize_fixed<Out>(acc[i], args.multiplier[c], args.shift[c], args.zero_point,
                                                args.qmin, args.qmax);
    });
  }
}

/// acc, out: [rows][channels], channel innermost; channel c uses scale[c].
template <class Arch = simd::default_arch, narrow_integer Out>
void requantize_float_per_channel(const std::int32_t* acc, std::size_t rows, std::size_t channels,
                                  const requant_channel_args& args, Out* out) noexcept {
  // Equals reference::requantize_float_per_channel bit for bit.
  auto k = detail::float_lanes_of<Arch>(1.0f, args.zero_point, args.qmin, args.qmax);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t i = r * channels;
    const std::size_t done = detail::for_batches<Arch>(channels, [&](std::size_t c) {
      k.scale = detail::f32<Arch>::load_unaligned(args.scale + c);
      simd::store_narrow<Out, Arch>(out + i + c,
                                    detail::float_batch(detail::i32<Arch>::load_unaligned(acc + i + c), k));
    });
    detail::channel_tail(r, r + 1, channels, done, [&](std::size_t j, std::size_t c) {
      out[j] = reference::requantize_float<Out>(acc[j], args.scale[c], args.zero_point, args.qmin, args.qmax);
    });
  }
}

}  // namespace xquant::kernels
XQUANT_SIMD_END
