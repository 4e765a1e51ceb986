#pragma once
// The fixed-point requantization of one output channel, folded into a cheaper form for an
// epilogue that knows a bound on its accumulators (the int8 GEMM and depthwise kernels know
// one from the weights: |sum_k a_k w_k| <= 255 * sum_k |w_k| for uint8 a).
//
// The specification (reference/requantize.hpp) is, with acc' = acc + bias, s = min(shift, 63):
//
//   q = round_half_away(acc' * multiplier / 2^s) + zero_point, then clamp
//
// which the SIMD kernels compute on |acc'| and put the sign back (~17 instructions per
// 16 outputs on AVX-512). Folded, it is one signed 64-bit multiply-add and one shift:
//
//   q = (acc * m + addend) >> t                (int64, arithmetic shift = floor division)
//   m = multiplier / 2^v, t = s - v            v = trailing zero bits of the multiplier
//   addend = bias * m + 2^(t-1) + zero_point * 2^t
//
// Why it is the same number, when fold_requant accepts the channel:
//  - acc' * multiplier / 2^s == acc' * m / 2^t: the same fraction, reduced.
//  - floor(x + 1/2) is round_half_away(x) except at negative exact ties. x = N / 2^t with
//    N = acc' * m is a tie iff N = 2^(t-1) * odd, i.e. N has exactly t - 1 trailing zero
//    bits; m is odd, so those are acc''s, and |acc'| <= T < 2^(t-1) has fewer. No ties,
//    so the sign needs no handling at all.
//  - Adding zero_point * 2^t before the floor division adds zero_point after it, exactly.
//  - Nothing overflows: acc * m and bias * m are below 2^62 in magnitude and the checks below
//    keep |N + addend - bias * m| < 2^63, so the (wrapping) 64-bit adds end on the true
//    value; and the result fits in int32 (below 2^30 + 2^16 in magnitude, by the tie rule),
//    so its low 32 bits are it.
// (T = acc_bound + |bias|, the bound on |acc'|; also T < 2^31, so the reference's int32 sums
// never wrap either.) A channel that fails a check keeps the unfolded path; for the
// reference models' layers every channel folds: t is ~20-40 and T below 2^27.

#include <algorithm>
#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <optional>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace xquant::kernels {

/// One channel's folded requantization (see above).
struct folded_requant {
  std::int64_t multiplier = 0;  ///< m: the odd part of the fixed-point multiplier, < 2^31
  std::int64_t addend = 0;      ///< bias * m + 2^(t-1) + zero_point * 2^t
  std::int64_t shift = 1;       ///< t, in [1, max_folded_shift]
};

/// Largest t fold_requant accepts: 2^(t-1) + 65535 * 2^t stays far below 2^63.
inline constexpr int max_folded_shift = 46;

/// The folded form of requantizing acc + bias with (multiplier, shift) and adding
/// zero_point, valid for every int32 acc with |acc| <= acc_bound; nullopt when the checks of
/// the comment above fail (then the caller uses the unfolded path).
inline std::optional<folded_requant> fold_requant(std::int32_t multiplier, std::int32_t shift, std::int32_t bias,
                                                  std::int64_t acc_bound, std::int32_t zero_point) noexcept {
  if (multiplier <= 0 || shift < 1 || acc_bound < 0 || zero_point < -65535 || zero_point > 65535) return std::nullopt;
  const int v = std::countr_zero(static_cast<std::uint32_t>(multiplier));
  const int t = (shift < 63 ? shift : 63) - v;
  if (t < 1 || t > max_folded_shift) return std::nullopt;
  const std::int64_t m = multiplier >> v;
  const std::int64_t total = acc_bound + (bias < 0 ? -std::int64_t{bias} : std::int64_t{bias});  // T
  if (total >= (std::int64_t{1} << 31) || total >= (std::int64_t{1} << (t - 1))) return std::nullopt;  // wrap, ties
  // |acc' * m| + 2^(t-1) + |zero_point| * 2^t < 2^63 (each term < 2^62: no uint64 wrap).
  const std::uint64_t magnitude = static_cast<std::uint64_t>(total) * static_cast<std::uint64_t>(m) +
                                  (std::uint64_t{1} << (t - 1)) +
                                  (static_cast<std::uint64_t>(zero_point < 0 ? -zero_point : zero_point) << t);
  if (magnitude >= (std::uint64_t{1} << 63)) return std::nullopt;
  // The result fits in int32 without a check: |acc' * m / 2^t| < 2^(t-1) * 2^31 / 2^t = 2^30,
  // plus the rounding and |zero_point| <= 65535.
  const std::int64_t addend =
      bias * m + (std::int64_t{1} << (t - 1)) + static_cast<std::int64_t>(zero_point) * (std::int64_t{1} << t);
  return folded_requant{m, addend, t};
}

/// The folded value for acc, before the clamp: fixed_point_round(acc + bias, multiplier,
/// shift) + zero_point of the folded channel, for |acc| <= its acc_bound.
inline std::int64_t folded_round(std::int32_t acc, const folded_requant& f) noexcept {
  return (acc * f.multiplier + f.addend) >> f.shift;  // arithmetic shift (C++20): floor
}

// ---- the same number from one float FMA ----
//
// Where a channel folds, the same q also comes out of single-precision arithmetic, with
// x = acc' (an exact int32 add) and scale = m / 2^t:
//
//   q = bits(fma(float(x), scale, 1.5 * 2^23 + zero_point)) - bits(1.5 * 2^23)
//
// which is a conversion, an FMA and (with the clamp done on the float, see below) nothing
// else: half the epilogue's instructions, and on the FP pipes instead of the integer
// shift/shuffle pipes the fixed-point form competes for. Why it is the same number, when
// fold_float_requant accepts the channel:
//  - float(x) is x: |x| <= T <= 2^24. scale is m * 2^-t exactly: m < 2^24 (always, for a
//    multiplier made from a float scale) and t <= max_folded_shift keeps it normal.
//  - The FMA rounds once, the exact x * scale + 1.5 * 2^23 + zero_point. While that lies in
//    [2^23, 2^24), float spacing there is 1, so the rounding is to the nearest integer:
//    1.5 * 2^23 + zero_point + round(x * scale), with ties to even. There are no ties (the
//    folded form's argument above), so that round is the specification's round half away.
//  - Such a float's bits are bits(1.5 * 2^23) + its integer part minus 1.5 * 2^23: the
//    "magic number" of kernels/requantize.hpp, which also holds the zero point here.
//  - Outside [2^23, 2^24), |round(x * scale) + zero_point| >= 2^22, far outside any uint8
//    clamp, and the float lies below 1.5 * 2^23 + lo or above 1.5 * 2^23 + hi (rounding is
//    monotone). So clamping the float to [1.5 * 2^23 + lo, 1.5 * 2^23 + hi] (exact floats)
//    clamps q to [lo, hi]; for lo, hi in [0, 255] q is then the low byte of the float's bits
//    (those of 1.5 * 2^23 end in 22 zero bits), which a truncating narrow (vpmovdb) stores.
//  - The float is positive and below 2^25: |x * scale| < 2^(t-1) * 2^24 / 2^t = 2^23 and
//    |zero_point| <= 65535. Its bits, read as an int32, grow with it; so bits minus
//    bits(1.5 * 2^23) is q inside [-2^22, 2^22] and beyond it on the same side, and an
//    integer clamp of that to [lo, hi] gives the same q as the float clamp (the depthwise
//    kernel's form: kernels/requantize.hpp, float_folded_lanes::rounded).
//  - Rounding to nearest is the mode in force (checked by the caller); no denormal is
//    involved (scale is normal, the sum is above 2^22), so flush-to-zero modes change
//    nothing.
// (Hardware FMA only: an FMA emulated as a multiply and an add rounds twice.)

/// One channel's requantization as float constants: q = the float bits of
/// fma(float(acc + bias), scale, offset) minus those of float_magic (see above).
struct float_folded_requant {
  std::int32_t bias = 0;
  float scale = 0.0f;
  float offset = 0.0f;  ///< float_magic + zero_point
};

// 1.5 * 2^23, the "magic number" every float kernel here rounds with (requantize.hpp).
inline constexpr float float_magic = 12582912.0f;
inline constexpr std::int32_t float_magic_bits = 0x4B400000;  // its bit pattern

/// True in the default floating-point rounding mode, the one fold_float_requant needs. On
/// x86 the SSE control register is read too: glibc's fegetround reads only the x87 one,
/// and _MM_SET_ROUNDING_MODE changes only the SSE one (which the SIMD kernels use).
inline bool float_rounding_is_nearest() noexcept {
#if defined(__SSE__)
  if ((_mm_getcsr() & _MM_ROUND_MASK) != _MM_ROUND_NEAREST) return false;
#endif
  return std::fegetround() == FE_TONEAREST;
}

/// The float form of requantizing acc + bias with (multiplier, shift) and adding zero_point,
/// valid for |acc| <= acc_bound and outputs clamped inside [0, 255], in the rounding mode
/// FE_TONEAREST (float_rounding_is_nearest: the caller checks it, once for many channels);
/// nullopt where the other conditions above fail (then the caller uses the integer forms).
inline std::optional<float_folded_requant> fold_float_requant(std::int32_t multiplier, std::int32_t shift,
                                                              std::int32_t bias, std::int64_t acc_bound,
                                                              std::int32_t zero_point) noexcept {
  const auto fixed = fold_requant(multiplier, shift, bias, acc_bound, zero_point);  // no ties
  if (!fixed) return std::nullopt;
  const std::int64_t total = acc_bound + (bias < 0 ? -std::int64_t{bias} : std::int64_t{bias});
  if (total > (std::int64_t{1} << 24) || fixed->multiplier >= (std::int64_t{1} << 24)) return std::nullopt;
  // m < 2^24 and 2^-t are floats, and so is their product, which is normal (>= 2^-46):
  // scaling by a power of two does not round.
  static_assert(max_folded_shift <= 126, "2^-t must be a normal float");
  const float pow2 = std::bit_cast<float>(static_cast<std::uint32_t>(127 - fixed->shift) << 23);  // 2^-t
  const float scale = static_cast<float>(fixed->multiplier) * pow2;
  return float_folded_requant{bias, scale, float_magic + static_cast<float>(zero_point)};
}

/// The float form for one accumulator, clamped to [lo, hi] (0 <= lo <= hi <= 255): the
/// scalar statement of what the SIMD epilogues compute (kernels/requantize.hpp,
/// float_folded_lanes), equal to the clamped folded_round wherever fold_float_requant
/// accepted the channel (in rounding to nearest).
inline std::int32_t float_folded_clamped(std::int32_t acc, const float_folded_requant& f, std::int32_t lo,
                                         std::int32_t hi) noexcept {
  const float y = std::fma(static_cast<float>(acc + f.bias), f.scale, f.offset);
  const float low = float_magic + static_cast<float>(lo), high = float_magic + static_cast<float>(hi);
  const float clamped = std::min(std::max(y, low), high);
  return std::bit_cast<std::int32_t>(clamped) - float_magic_bits;
}

/// The bound on |sum_k a_k w_k| over uint8 a: 255 * sum_k |w_k|.
inline std::int64_t uint8_dot_bound(const std::int8_t* w, std::size_t k, std::size_t stride = 1) noexcept {
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < k; ++i) sum += w[i * stride] < 0 ? -std::int64_t{w[i * stride]} : w[i * stride];
  return 255 * sum;
}

}  // namespace xquant::kernels
