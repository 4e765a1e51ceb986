#pragma once
// quantized_tensor<Scheme>: integer data, its shape and its quant_params.
//
// The storage follows from the scheme: one int8/uint8 per value up to 8 bits, one
// int16/uint16 above; 2-bit values are packed four to a byte and 3/4-bit values two to a
// byte (packing.hpp). Every constructor validates its parameters against the scheme and
// the shape, so a quantized_tensor always holds a consistent (data, params) pair.

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "xquant/core/tensor.hpp"
#include "xquant/quant/packing.hpp"
#include "xquant/quant/params.hpp"
#include "xquant/quant/quantize.hpp"

namespace xquant {

template <quant_scheme Scheme>
class quantized_tensor {
 public:
  using scheme_type = Scheme;
  using value_type = typename Scheme::value_type;
  static constexpr bool is_packed = Scheme::values_per_byte > 1;
  /// One element of the backing buffer: a byte of packed values, or one value.
  using storage_unit = std::conditional_t<is_packed, std::uint8_t, value_type>;

  quantized_tensor() = default;

  /// A tensor of `shape` whose every element is the zero point (represents real 0).
  quantized_tensor(shape_t shape, quant_params params) : shape_(std::move(shape)), params_(std::move(params)) {
    validate<Scheme>(params_);
    validate_shape(params_, shape_);
    data_.assign(storage_units(element_count(shape_)), storage_unit{0});
    const axis_layout layout = axis_layout::of(shape_, params_.axis);
    std::size_t i = 0;
    for (std::size_t o = 0; o < layout.outer; ++o)
      for (std::size_t c = 0; c < layout.channels; ++c)
        for (std::size_t k = 0; k < layout.inner; ++k) set(i++, params_.zero_point[c]);
  }

  /// Quantizes `x` with `params` (ONNX QuantizeLinear semantics, quantize.hpp).
  static quantized_tensor quantize(const array<float>& x, quant_params params) {
    const array<value_type> q = xquant::quantize<Scheme>(x, params);
    quantized_tensor t;
    t.shape_ = shape_of(x);
    t.params_ = std::move(params);
    t.data_.resize(storage_units(q.size()));
    for (std::size_t i = 0; i < q.size(); ++i) t.set(i, q.data()[i]);
    return t;
  }

  /// Wraps integer values; each must lie in [qmin, qmax].
  static quantized_tensor from_values(shape_t shape, std::span<const std::int32_t> values, quant_params params) {
    check<shape_error>(values.size() == element_count(shape), "from_values: ", values.size(),
                       " values for shape ", shape_string(shape));
    quantized_tensor t(std::move(shape), std::move(params));
    for (std::size_t i = 0; i < values.size(); ++i) t.set_value(i, values[i]);
    return t;
  }

  array<float> dequantize() const {
    array<float> x(shape_);
    const axis_layout layout = axis_layout::of(shape_, params_.axis);
    std::size_t i = 0;
    for (std::size_t o = 0; o < layout.outer; ++o)
      for (std::size_t c = 0; c < layout.channels; ++c)
        for (std::size_t k = 0; k < layout.inner; ++k, ++i)
          x.data()[i] = dequantize_value(value(i), params_.scale[c], params_.zero_point[c]);
    return x;
  }

  /// The integer at flat (row-major) index i.
  std::int32_t value(std::size_t i) const {
    check<shape_error>(i < size(), "index ", i, " out of range for ", size(), " elements");
    if constexpr (is_packed) {
      return unpack_bit_value(data_, i, Scheme::container_bits, Scheme::range::is_signed);
    } else {
      return data_[i];
    }
  }

  void set_value(std::size_t i, std::int32_t v) {
    check<shape_error>(i < size(), "index ", i, " out of range for ", size(), " elements");
    check(v >= Scheme::qmin && v <= Scheme::qmax, "value ", v, " is outside [", Scheme::qmin, ", ",
          Scheme::qmax, "]");
    set(i, v);
  }

  /// All values, unpacked.
  array<value_type> values() const {
    array<value_type> out(shape_);
    for (std::size_t i = 0; i < size(); ++i) out.data()[i] = static_cast<value_type>(value(i));
    return out;
  }

  const shape_t& shape() const { return shape_; }
  std::size_t size() const { return element_count(shape_); }
  const quant_params& params() const { return params_; }
  /// The backing buffer (packed bytes when is_packed).
  std::span<const storage_unit> storage() const { return data_; }
  std::size_t storage_bytes() const { return data_.size() * sizeof(storage_unit); }

 private:
  static std::size_t storage_units(std::size_t count) {
    return is_packed ? packed_bytes(count, Scheme::container_bits) : count;
  }

  // Unchecked store; v is known to be in range.
  void set(std::size_t i, std::int32_t v) {
    if constexpr (is_packed) {
      constexpr unsigned bits = Scheme::container_bits;
      constexpr unsigned per_byte = 8u / bits;
      constexpr unsigned mask = (1u << bits) - 1u;
      const unsigned shift = static_cast<unsigned>(i % per_byte) * bits;
      std::uint8_t& byte = data_[i / per_byte];
      byte = static_cast<std::uint8_t>((byte & ~(mask << shift)) | ((static_cast<unsigned>(v) & mask) << shift));
    } else {
      data_[i] = static_cast<value_type>(v);
    }
  }

  shape_t shape_;
  quant_params params_;
  std::vector<storage_unit> data_;
};

}  // namespace xquant
