#pragma once
// quantize / dequantize: the float <-> integer maps, exactly as ONNX defines them.
//
//   QuantizeLinear:   q = saturate(round(x / scale) + zero_point)
//   DequantizeLinear: x = (q - zero_point) * scale
//
// Arithmetic is float32 like the ONNX reference: x / scale is one correctly rounded
// float32 division (not x * (1/scale), which differs in the last bit and can flip a
// rounding tie), round is the scheme's rule (half to even by default), and saturate
// clamps to [qmin, qmax]. Clamping happens before the conversion to an integer, so huge
// quotients and +-Inf saturate without overflow: +Inf -> qmax, -Inf -> qmin.
// NaN has no meaningful integer; it is rejected with numeric_error naming its index.

#include <cmath>
#include <cstdint>
#include <span>

#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/params.hpp"
#include "xquant/quant/rounding.hpp"

namespace xquant {

/// One value; the parameters must already be valid for Scheme.
template <quant_scheme Scheme>
std::int32_t quantize_value(float x, float scale, std::int32_t zero_point) {
  check<numeric_error>(!std::isnan(x), "cannot quantize NaN");
  const float q = round_to_integral<typename Scheme::rounding>(x / scale);
  // Bounds relative to the zero point; both are small integers, exact in float.
  const float lo = static_cast<float>(Scheme::qmin - zero_point);
  const float hi = static_cast<float>(Scheme::qmax - zero_point);
  return static_cast<std::int32_t>(std::fmin(std::fmax(q, lo), hi)) + zero_point;
}

template <class Int>
float dequantize_value(Int q, float scale, std::int32_t zero_point) {
  return static_cast<float>(static_cast<std::int32_t>(q) - zero_point) * scale;
}

/// Quantizes `x` (row-major, `shape`) into `out` with validated params `p`.
template <quant_scheme Scheme, class Int>
void quantize_into(std::span<const float> x, std::span<const std::size_t> shape, const quant_params& p,
                   std::span<Int> out) {
  const axis_layout layout = axis_layout::of(shape, p.axis);
  check<shape_error>(x.size() == layout.size() && out.size() == layout.size(),
                     "quantize: buffer sizes do not match shape ", shape_string(shape));
  std::size_t i = 0;
  for (std::size_t o = 0; o < layout.outer; ++o) {
    for (std::size_t c = 0; c < layout.channels; ++c) {
      const float s = p.scale[c];
      const std::int32_t z = p.zero_point[c];
      for (std::size_t k = 0; k < layout.inner; ++k, ++i) {
        check<numeric_error>(!std::isnan(x[i]), "cannot quantize NaN at flat index ", i);
        out[i] = static_cast<Int>(quantize_value<Scheme>(x[i], s, z));
      }
    }
  }
}

template <class Int>
void dequantize_into(std::span<const Int> q, std::span<const std::size_t> shape, const quant_params& p,
                     std::span<float> out) {
  const axis_layout layout = axis_layout::of(shape, p.axis);
  check<shape_error>(q.size() == layout.size() && out.size() == layout.size(),
                     "dequantize: buffer sizes do not match shape ", shape_string(shape));
  std::size_t i = 0;
  for (std::size_t o = 0; o < layout.outer; ++o) {
    for (std::size_t c = 0; c < layout.channels; ++c) {
      for (std::size_t k = 0; k < layout.inner; ++k, ++i) {
        out[i] = dequantize_value(q[i], p.scale[c], p.zero_point[c]);
      }
    }
  }
}

/// Quantizes a tensor to unpacked integers of the scheme's value_type.
template <quant_scheme Scheme>
array<typename Scheme::value_type> quantize(const array<float>& x, const quant_params& p) {
  validate<Scheme>(p);
  const shape_t shape = shape_of(x);
  validate_shape(p, shape);
  array<typename Scheme::value_type> q(shape);
  quantize_into<Scheme>(std::span<const float>(x.data(), x.size()), shape, p,
                        std::span<typename Scheme::value_type>(q.data(), q.size()));
  return q;
}

template <quant_scheme Scheme>
array<float> dequantize(const array<typename Scheme::value_type>& q, const quant_params& p) {
  validate<Scheme>(p);
  const shape_t shape = shape_of(q);
  validate_shape(p, shape);
  array<float> x(shape);
  dequantize_into(std::span<const typename Scheme::value_type>(q.data(), q.size()), shape, p,
                  std::span<float>(x.data(), x.size()));
  return x;
}

/// Quantize then dequantize: the values a quantized tensor represents. The forward of
/// fake quantization in QAT.
template <quant_scheme Scheme>
array<float> fake_quantize(const array<float>& x, const quant_params& p) {
  return dequantize<Scheme>(quantize<Scheme>(x, p), p);
}

}  // namespace xquant
