#pragma once
// Requantization, the specification: int32 accumulator -> narrow integer output.
// Every fast kernel (kernels/requantize.hpp) must equal these functions bit for bit.
//
// ---- Fixed-point path ---------------------------------------------------------------------
//
//   out = clamp(round_half_away(acc * multiplier / 2^shift) + zero_point, qmin, qmax)
//
// in exact integer arithmetic, as a 64-bit product and ONE rounding right shift:
//
//   p = int64(acc) * multiplier            |acc| <= 2^31, multiplier < 2^31: |p| < 2^62
//   s = min(shift, 63)                     shift >= 63 rounds every p to 0, as does s = 63
//   q = (p + 2^(s-1) - (p < 0)) >> s       arithmetic shift = floor division by 2^s
//
// For p >= 0, q = floor(p / 2^s + 1/2): ties go up, i.e. away from zero. For p < 0 the "-1"
// moves ties up by one half-ulp less, so they go down, also away from zero; in both cases
// q == sign(p) * floor(|p| / 2^s + 1/2). p + 2^(s-1) < 2^63 always: nothing overflows.
//
// Since multiplier * 2^-shift is the float32 scale *exactly* (fixed_point.hpp), q is the exact
// real product acc * scale rounded once, half away from zero: q == std::round(acc * scale)
// computed with infinite precision. (std::round((double)acc * scale) in plain double is not
// quite that: the product needs up to 31 + 24 = 55 bits and double has 53, so when the
// double rounding lands exactly on a .5 that the exact product only approaches, it rounds
// to the wrong side. That needs a product of more than 53 significant bits, i.e. a large
// |acc * scale| or a small scale: e.g. acc = 1835638166, scale = 0x1.c0b23ap-17 gives exactly
// 24546.5 - 2^-39, rounded 24546, but std::round of the double product gives 24547. The
// tests construct many such cases and check that they are the only differences.)
//
// Why not gemmlowp/TFLite's SaturatingRoundingDoublingHighMul + RoundingDivideByPOT: that is
// two roundings in a row, the first to the high 32 bits of 2*p, the second by the exponent.
// A product just below a tie can be rounded up onto the tie by the first step and then away
// by the second, so the result is one off near ties; it also quantizes a double scale to 31
// bits, so it is not the float scale. One 64-bit rounding shift costs about the same in SIMD.
// (TFLite's newer TFLITE_SINGLE_ROUNDING mode also rounds once, but adds 2^(s-1) for every
// sign, i.e. rounds ties up, towards +infinity.)
//
// Why half away from zero: it is symmetric (round(-x) == -round(x)), so negative
// accumulators are exact mirror images of positive ones and no bias depends on the sign; it
// is std::round, so the specification is checkable against plain C++; it is how gemmlowp's
// two steps round each tie; and it costs one add and one compare (round half to even would
// need a tie test on the discarded bits).
//
// ---- Float path --------------------------------------------------------------------------
//
//   y   = float(acc) * scale                                  float32 multiply
//   y   = min(max(y, float(qmin - zero_point)), float(qmax - zero_point))
//   out = int32(nearbyint(y)) + zero_point                    round half to even
//
// This is XNNPACK's "fp32" requantization and ONNX QuantizeLinear's rounding. It is cheap,
// vectorizes on every ISA (a float multiply, a clamp and the hardware's default rounding) and
// needs no per-lane shifts, so it is the natural choice for per-channel NHWC epilogues.
// Clamping in float before converting keeps the conversion in range (no undefined behaviour)
// and, because the bounds are integers, gives the same result as clamping after rounding.
// It is not exact: float(acc) is rounded for |acc| > 2^24 and the product is rounded to 24
// bits, so a value near a tie can round the other way; and exact ties go to even. The result
// is within 1 of the exactly rounded round(acc * scale) (tested). nearbyint assumes the
// default rounding mode (FE_TONEAREST; xquant never changes it) and float arithmetic done in
// float (FLT_EVAL_METHOD == 0: every x86-64 and AArch64 compiler; not x87 builds). No add
// follows the multiply before the rounding, so FMA contraction (on by default in GCC for C++)
// cannot change the result either.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "xquant/kernels/requant_args.hpp"

namespace xquant::kernels::reference {

/// round_half_away(acc * multiplier / 2^shift), exactly. multiplier in [0, 2^31), shift >= 1.
inline std::int64_t fixed_point_round(std::int32_t acc, std::int32_t multiplier, int shift) noexcept {
  const int s = std::min(shift, 63);
  const std::int64_t p = std::int64_t{acc} * multiplier;
  const std::int64_t bias = (std::int64_t{1} << (s - 1)) - (p < 0 ? 1 : 0);
  return (p + bias) >> s;
}

template <narrow_integer Out>
Out requantize_fixed(std::int32_t acc, std::int32_t multiplier, int shift, std::int32_t zero_point,
                     std::int32_t qmin, std::int32_t qmax) noexcept {
  const std::int64_t q = fixed_point_round(acc, multiplier, shift) + zero_point;
  return static_cast<Out>(std::clamp<std::int64_t>(q, qmin, qmax));
}

template <narrow_integer Out>
Out requantize_float(std::int32_t acc, float scale, std::int32_t zero_point, std::int32_t qmin,
                     std::int32_t qmax) noexcept {
  const float lo = static_cast<float>(qmin - zero_point);
  const float hi = static_cast<float>(qmax - zero_point);
  const float y = std::min(std::max(static_cast<float>(acc) * scale, lo), hi);
  return static_cast<Out>(static_cast<std::int32_t>(std::nearbyint(y)) + zero_point);
}

// ---- arrays -----------------------------------------------------------------------------

template <narrow_integer Out>
void requantize_fixed(const std::int32_t* acc, std::size_t n, const requant_args& a, Out* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = requantize_fixed<Out>(acc[i], a.multiplier, a.shift, a.zero_point, a.qmin, a.qmax);
  }
}

template <narrow_integer Out>
void requantize_float(const std::int32_t* acc, std::size_t n, const requant_args& a, Out* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = requantize_float<Out>(acc[i], a.scale, a.zero_point, a.qmin, a.qmax);
  }
}

/// acc and out are [rows][channels], channel innermost (NHWC).
template <narrow_integer Out>
void requantize_fixed_per_channel(const std::int32_t* acc, std::size_t rows, std::size_t channels,
                                  const requant_channel_args& a, Out* out) noexcept {
  for (std::size_t i = 0; i < rows * channels; ++i) {
    const std::size_t c = i % channels;
    out[i] = requantize_fixed<Out>(acc[i], a.multiplier[c], a.shift[c], a.zero_point, a.qmin, a.qmax);
  }
}

template <narrow_integer Out>
void requantize_float_per_channel(const std::int32_t* acc, std::size_t rows, std::size_t channels,
                                  const requant_channel_args& a, Out* out) noexcept {
  for (std::size_t i = 0; i < rows * channels; ++i) {
    const std::size_t c = i % channels;
    out[i] = requantize_float<Out>(acc[i], a.scale[c], a.zero_point, a.qmin, a.qmax);
  }
}

}  // namespace xquant::kernels::reference
