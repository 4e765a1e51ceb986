#pragma once
// Integer ranges: the set of integers a quantized value may take.
//
// A range is a tag type with constexpr `lo` and `hi`. Three spellings cover practice:
//   signed_bits<B>    [-2^(B-1), 2^(B-1) - 1]      e.g. int8   [-128, 127]
//   unsigned_bits<B>  [0, 2^B - 1]                 e.g. uint8  [0, 255]
//   narrow_bits<B>    [-2^(B-1) + 1, 2^(B-1) - 1]  e.g. int8   [-127, 127]
// narrow_bits is the usual choice for symmetric weights: with -128 excluded, negating a
// quantized value never overflows and the range is symmetric around the zero point 0.
// Any other range can be written as int_range<Lo, Hi>.
//
// Rules (checked at compile time, the message says what to change):
//   - the range contains 0, so that real zero is exactly representable (zero padding and
//     ReLU outputs must not pick up a rounding error);
//   - it spans 2 to 16 bits.

#include <bit>
#include <cstdint>

namespace xquant {

struct range_tag {};

namespace detail {

constexpr int bits_for_span(long long lo, long long hi) {
  // Number of bits needed to hold hi - lo + 1 distinct levels.
  return std::bit_width(static_cast<unsigned long long>(hi - lo));
}

constexpr bool valid_bit_count(int b) { return b >= 2 && b <= 16; }

// The bounds below return a harmless placeholder for invalid B so that the only error
// the user sees is the static_assert with the readable message, not a shift overflow.
constexpr int signed_lo(int b) { return valid_bit_count(b) ? -(1 << (b - 1)) : -2; }
constexpr int signed_hi(int b) { return valid_bit_count(b) ? (1 << (b - 1)) - 1 : 1; }
constexpr int unsigned_hi(int b) { return valid_bit_count(b) ? (1 << b) - 1 : 3; }

}  // namespace detail

template <int Lo, int Hi>
struct int_range {
  using kind = range_tag;
  static constexpr int lo = Lo;
  static constexpr int hi = Hi;
  static constexpr long long levels = static_cast<long long>(Hi) - Lo + 1;
  static constexpr int bits = detail::bits_for_span(Lo, Hi);
  static constexpr bool is_signed = Lo < 0;

  static_assert(Lo < Hi, "xquant: int_range<Lo, Hi> needs Lo < Hi");
  static_assert(Lo <= 0 && Hi >= 0,
                "xquant: an integer range must contain 0 so that real zero is exactly "
                "representable; choose Lo <= 0 <= Hi");
  static_assert(bits >= 2 && bits <= 16,
                "xquant: an integer range must span 2 to 16 bits; use signed_bits<B>, "
                "unsigned_bits<B> or narrow_bits<B> with 2 <= B <= 16");
};

template <int B>
struct signed_bits : int_range<detail::signed_lo(B), detail::signed_hi(B)> {
  static_assert(detail::valid_bit_count(B),
                "xquant: bit width must be between 2 and 16; change B in signed_bits<B>");
};

template <int B>
struct unsigned_bits : int_range<0, detail::unsigned_hi(B)> {
  static_assert(detail::valid_bit_count(B),
                "xquant: bit width must be between 2 and 16; change B in unsigned_bits<B>");
};

template <int B>
struct narrow_bits : int_range<detail::signed_lo(B) + 1, detail::signed_hi(B)> {
  static_assert(detail::valid_bit_count(B),
                "xquant: bit width must be between 2 and 16; change B in narrow_bits<B>");
};

}  // namespace xquant
