#pragma once
// The float <-> uint8 conversions at the edges of an integer-only network, the
// specification (kernels/int8/boundary.hpp is the fast version and must equal it bit for
// bit).
//
// Quantize (the network input, float32 NCHW -> uint8 NHWC):
//
//   q = clamp(nearbyint(x / scale), -zp, 255 - zp) + zp        float32 arithmetic
//
// which is ONNX QuantizeLinear and exactly xquant::quantize_value for the uint8 activation
// scheme (scheme<unsigned_bits<8>, asymmetric>, round half to even): one correctly rounded
// float32 division (not a multiply by 1/scale, which can move a tie), the default rounding
// mode's half-to-even, and the clamp in float so that huge quotients and +-Inf saturate.
// (The kernels layer may not include quant/, so the formula is restated here; the tests
// check it against quantize_value bit for bit.) NaN has no integer: the functions return
// false when the input holds one, and the byte written for it is unspecified (0 on x86);
// the runtime turns false into a numeric_error.
//
// Dequantize (the logits, uint8 -> float32): x = float(q - zp) * scale, one rounding, as
// xquant::dequantize_value.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "xquant/core/error.hpp"
#include "xquant/kernels/reference/int8/shape.hpp"

namespace xquant::kernels::int8 {

/// The affine map of a uint8 activation tensor: real = scale * (q - zero_point).
struct activation_quant {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
};

/// Throws value_error unless scale is finite and >= the smallest normal float (the rule of
/// quant/params.hpp: 1 / scale must not overflow) and zero_point is in [0, 255].
inline activation_quant make_activation_quant(float scale, std::int32_t zero_point) {
  check<value_error>(std::isfinite(scale) && scale >= std::numeric_limits<float>::min(), "activation scale ", scale,
                     " is not a finite number >= ", std::numeric_limits<float>::min());
  check<value_error>(zero_point >= 0 && zero_point <= 255, "activation zero point ", zero_point,
                     " is outside [0, 255]");
  return {scale, zero_point};
}

}  // namespace xquant::kernels::int8

namespace xquant::kernels::reference::int8 {

using kernels::int8::activation_quant;
using kernels::int8::nhwc_shape;

/// One value; x must not be NaN.
inline std::uint8_t quantize(float x, const activation_quant& q) noexcept {
  const float lo = static_cast<float>(-q.zero_point);
  const float hi = static_cast<float>(255 - q.zero_point);
  const float r = std::fmin(std::fmax(std::nearbyint(x / q.scale), lo), hi);
  return static_cast<std::uint8_t>(static_cast<std::int32_t>(r) + q.zero_point);
}

/// x: float [s.n][s.c][s.h][s.w] (NCHW); out: uint8 [s.n][s.h][s.w][s.c] (NHWC). Returns
/// false if x holds a NaN.
inline bool quantize_nchw_to_nhwc(const float* x, const nhwc_shape& s, const activation_quant& q,
                                  std::uint8_t* out) noexcept {
  bool finite_or_inf = true;
  const std::size_t plane = s.h * s.w;
  for (std::size_t n = 0; n < s.n; ++n) {
    for (std::size_t c = 0; c < s.c; ++c) {
      for (std::size_t i = 0; i < plane; ++i) {
        const float v = x[(n * s.c + c) * plane + i];
        finite_or_inf = finite_or_inf && !std::isnan(v);
        out[(n * plane + i) * s.c + c] = std::isnan(v) ? std::uint8_t{0} : quantize(v, q);
      }
    }
  }
  return finite_or_inf;
}

inline float dequantize(std::uint8_t v, const activation_quant& q) noexcept {
  return static_cast<float>(std::int32_t{v} - q.zero_point) * q.scale;
}

/// out[i] = dequantize(v[i]), i < n (e.g. the logits [n][c], n * c values).
inline void dequantize(const std::uint8_t* v, std::size_t n, const activation_quant& q, float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = dequantize(v[i], q);
}

}  // namespace xquant::kernels::reference::int8
