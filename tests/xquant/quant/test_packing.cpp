#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "xquant/quant/packing.hpp"
#include "xquant/quant/quantized_tensor.hpp"

using namespace xquant;

TEST_CASE("packed byte counts round up") {
  CHECK(packed_bytes(0, 4) == 0);
  CHECK(packed_bytes(1, 4) == 1);
  CHECK(packed_bytes(3, 4) == 2);
  CHECK(packed_bytes(5, 2) == 2);
  CHECK(packed_bytes(8, 2) == 2);
  CHECK(packed_bytes(7, 8) == 7);
}

TEST_CASE("4-bit layout: low nibble first, signed values in two's complement") {
  const std::vector<std::int32_t> v = {-8, 7, -1, 3, 5};
  std::vector<std::uint8_t> bytes(packed_bytes(v.size(), 4));
  pack_bits(v, 4, bytes);
  CHECK(bytes == std::vector<std::uint8_t>{0x78, 0x3F, 0x05});  // unused high nibble is zero
  std::vector<std::int32_t> back(v.size());
  unpack_bits(bytes, 4, true, back);
  CHECK(back == v);
}

TEST_CASE("2-bit layout and unsigned unpack") {
  const std::vector<std::int32_t> v = {0, 1, 2, 3, 3, 2, 1};
  std::vector<std::uint8_t> bytes(packed_bytes(v.size(), 2));
  pack_bits(v, 2, bytes);
  CHECK(bytes == std::vector<std::uint8_t>{0xE4, 0x1B});
  std::vector<std::int32_t> back(v.size());
  unpack_bits(bytes, 2, false, back);
  CHECK(back == v);
}

TEST_CASE("pack/unpack round-trips random values for every odd size") {
  std::mt19937 rng(3);
  for (int bits : {2, 4}) {
    for (bool is_signed : {false, true}) {
      const int lo = is_signed ? -(1 << (bits - 1)) : 0;
      const int hi = is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
      std::uniform_int_distribution<int> dist(lo, hi);
      for (std::size_t n = 0; n <= 33; ++n) {
        std::vector<std::int32_t> v(n);
        for (auto& x : v) x = dist(rng);
        std::vector<std::uint8_t> bytes(packed_bytes(n, bits));
        pack_bits(v, bits, bytes);
        std::vector<std::int32_t> back(n);
        unpack_bits(bytes, bits, is_signed, back);
        REQUIRE(back == v);
      }
    }
  }
}

TEST_CASE("wrong buffer sizes and bit widths are errors") {
  std::vector<std::int32_t> v(5);
  std::vector<std::uint8_t> small(2);
  CHECK_THROWS_AS(pack_bits(v, 4, small), shape_error);
  CHECK_THROWS_AS(pack_bits(v, 3, small), value_error);
  CHECK_THROWS_AS(unpack_bits(small, 4, true, v), shape_error);
}
