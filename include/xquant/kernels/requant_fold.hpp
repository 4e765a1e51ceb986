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

#include <bit>
#include <cstdint>
#include <optional>

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

/// The bound on |sum_k a_k w_k| over uint8 a: 255 * sum_k |w_k|.
inline std::int64_t uint8_dot_bound(const std::int8_t* w, std::size_t k, std::size_t stride = 1) noexcept {
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < k; ++i) sum += w[i * stride] < 0 ? -std::int64_t{w[i * stride]} : w[i * stride];
  return 255 * sum;
}

}  // namespace xquant::kernels
