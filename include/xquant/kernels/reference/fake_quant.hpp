#pragma once
// Fake quantization and the min/max scan, the specification: what QAT runs on every
// weight and activation tensor at every step. kernels/fake_quant.hpp must equal these
// functions bit for bit.
//
// ---- fake_quant: one run of values sharing (scale, zero point) -------------------------
//
//   r = nearbyint(x / scale)                  one float32 division, round half to even
//   y = float(int32(clamp(r, lo, hi))) * scale,   lo = qmin - zero_point, hi = qmax - zero_point
//   inside = lo <= r <= hi                    the clipped-STE mask: the gradient passes here
//
// y is ONNX QuantizeLinear then DequantizeLinear (quant/quantize.hpp's quantize_value and
// dequantize_value) bit for bit: (q - z) * s with q - z = clamp(r, lo, hi), an integer that
// the int32 round trip turns into +0.0 where r was -0.0. The mask is decided on the rounded,
// unclamped r (PyTorch's fake_quantize_*_cachemask); see nn/functional/fake_quant.hpp.
//
// The mask is a bit array: bit k is bit k % 8 of byte k / 8. A run covers bits
// [bit0, bit0 + n); the kernels OR bits into bytes the run shares with its neighbours and
// assign the bytes that lie wholly inside it, so the caller zeroes the array first and gives
// runs that share a byte to one thread (split the tensor at multiples of 8 elements).
// A NaN in x makes the kernels return true; y and the mask bit of a NaN are unspecified.
//
// ---- masked_add / masked_copy: the clipped-STE backward -----------------------------------
//
//   masked_add    dx[i] += dy[i] where mask bit (bit0 + i) is set; dx[i] unchanged elsewhere
//   masked_copy   dx[i] = 0.0f + dy[i] where the bit is set, else 0.0f: exactly masked_add
//                 into a zeroed dx (0.0f + -0.0f is +0.0f), for a gradient buffer that is
//                 new and uninitialised (autograd::input_grad_target)
//
// ---- min_max: the observers' scan ----------------------------------------------------------
//
//   lo = min(lo, x[i]), hi = max(hi, x[i]) over the run; returns true when x holds a NaN
//   (lo and hi are then unspecified). Where both +0.0 and -0.0 occur the sign of a zero
//   bound is unspecified (the values compare equal; choose_params treats them alike).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace xquant::kernels {

/// The run-time arguments of one fake-quantization run. lo and hi are integers with
/// |lo|, |hi| <= 65535 and lo <= 0 <= hi (every xquant scheme's range contains its zero
/// point); scale is a finite float >= the smallest normal float (validate<Scheme>).
struct fake_quant_args {
  float scale = 1.0f;
  float lo = 0.0f;  ///< qmin - zero_point
  float hi = 0.0f;  ///< qmax - zero_point
};

/// The mask bytes for n elements.
constexpr std::size_t mask_bytes(std::size_t n) { return (n + 7) / 8; }

namespace reference {

inline bool mask_bit(const std::uint8_t* mask, std::size_t k) { return ((mask[k / 8] >> (k % 8)) & 1u) != 0; }
inline void set_mask_bit(std::uint8_t* mask, std::size_t k) { mask[k / 8] |= static_cast<std::uint8_t>(1u << (k % 8)); }

/// y[i] = fake quantization of x[i]; with a mask, bit (bit0 + i) is set where inside.
/// Returns true when x contains a NaN.
inline bool fake_quant(const float* x, std::size_t n, const fake_quant_args& a, float* y, std::uint8_t* mask,
                       std::size_t bit0) noexcept {
  bool nan = false;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) {
      nan = true;
      continue;
    }
    const float r = std::nearbyint(x[i] / a.scale);
    const float q = std::fmin(std::fmax(r, a.lo), a.hi);
    y[i] = static_cast<float>(static_cast<std::int32_t>(q)) * a.scale;
    if (mask && r >= a.lo && r <= a.hi) set_mask_bit(mask, bit0 + i);
  }
  return nan;
}

/// dx[i] += dy[i] where mask bit (bit0 + i) is set.
inline void masked_add(const float* dy, std::size_t n, const std::uint8_t* mask, std::size_t bit0,
                       float* dx) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    if (mask_bit(mask, bit0 + i)) dx[i] += dy[i];
  }
}

/// dx[i] = 0.0f + dy[i] where mask bit (bit0 + i) is set, else 0.0f.
inline void masked_copy(const float* dy, std::size_t n, const std::uint8_t* mask, std::size_t bit0,
                        float* dx) noexcept {
  for (std::size_t i = 0; i < n; ++i) dx[i] = mask_bit(mask, bit0 + i) ? 0.0f + dy[i] : 0.0f;
}

/// Widens [lo, hi] to the values of x; returns true when x contains a NaN.
inline bool min_max(const float* x, std::size_t n, float& lo, float& hi) noexcept {
  bool nan = false;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) {
      nan = true;
      continue;
    }
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  return nan;
}

}  // namespace reference
}  // namespace xquant::kernels
