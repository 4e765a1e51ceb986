#pragma once
// Sub-byte packing: 2-bit values four to a byte, 4-bit values two to a byte.
//
// Layout (the one ONNX uses for INT4/UINT4 and most embedded runtimes): value i lives in
// byte i / per_byte at bit offset (i % per_byte) * bits, lowest bits first. Signed values
// are stored as their low `bits` bits (two's complement) and sign-extended on unpack.
// Unused high bits of the last byte are zero, so packed buffers compare equal bytewise
// and an odd element count needs no special case when reading.

#include <cstddef>
#include <cstdint>
#include <span>

#include "xquant/core/error.hpp"

namespace xquant {

inline constexpr std::size_t packed_bytes(std::size_t count, int container_bits) {
  const std::size_t per_byte = container_bits < 8 ? static_cast<std::size_t>(8 / container_bits) : 1;
  return (count + per_byte - 1) / per_byte;
}

/// Packs `values` (each must fit in `bits` bits, signed or not) into `out`.
inline void pack_bits(std::span<const std::int32_t> values, int bits, std::span<std::uint8_t> out) {
  check(bits == 2 || bits == 4, "pack_bits supports 2 or 4 bits, got ", bits);
  check<shape_error>(out.size() == packed_bytes(values.size(), bits), "pack_bits: output has ",
                     out.size(), " bytes, need ", packed_bytes(values.size(), bits));
  const unsigned per_byte = 8u / static_cast<unsigned>(bits);
  const unsigned mask = (1u << bits) - 1u;
  for (std::uint8_t& b : out) b = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const unsigned shift = static_cast<unsigned>(i % per_byte) * static_cast<unsigned>(bits);
    out[i / per_byte] = static_cast<std::uint8_t>(out[i / per_byte] |
                                                  ((static_cast<unsigned>(values[i]) & mask) << shift));
  }
}

/// The i-th value of a packed buffer.
inline std::int32_t unpack_bit_value(std::span<const std::uint8_t> packed, std::size_t i, int bits,
                                     bool is_signed) {
  const unsigned per_byte = 8u / static_cast<unsigned>(bits);
  const unsigned shift = static_cast<unsigned>(i % per_byte) * static_cast<unsigned>(bits);
  const unsigned raw = (static_cast<unsigned>(packed[i / per_byte]) >> shift) & ((1u << bits) - 1u);
  // Sign-extend: subtract 2^bits when the top bit of the field is set.
  const bool negative = is_signed && (raw >> (bits - 1)) != 0;
  return static_cast<std::int32_t>(raw) - (negative ? (1 << bits) : 0);
}

/// Unpacks `out.size()` values from `packed`.
inline void unpack_bits(std::span<const std::uint8_t> packed, int bits, bool is_signed,
                        std::span<std::int32_t> out) {
  check(bits == 2 || bits == 4, "unpack_bits supports 2 or 4 bits, got ", bits);
  check<shape_error>(packed.size() == packed_bytes(out.size(), bits), "unpack_bits: input has ",
                     packed.size(), " bytes, ", out.size(), " values need ", packed_bytes(out.size(), bits));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = unpack_bit_value(packed, i, bits, is_signed);
}

}  // namespace xquant
