#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "xquant/io/crc32.hpp"

using xquant::io::crc32;

namespace {

// Bitwise CRC-32 straight from the definition, as the oracle for the sliced tables.
std::uint32_t crc32_bitwise(const unsigned char* p, std::size_t n) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

}  // namespace

TEST_CASE("crc32: the standard check values") {
  CHECK(crc32("123456789", 9) == 0xCBF43926u);
  CHECK(crc32("", 0) == 0u);
  CHECK(crc32(nullptr, 0) == 0u);
  const std::string fox = "The quick brown fox jumps over the lazy dog";
  CHECK(crc32(fox.data(), fox.size()) == 0x414FA339u);
}

TEST_CASE("crc32: every length and alignment matches the bitwise definition, and chunks compose") {
  std::vector<unsigned char> bytes(300);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 131 + 7);
  for (std::size_t start = 0; start < 4; ++start) {
    for (std::size_t n = 0; n + start <= bytes.size(); n += 7) {
      CHECK(crc32(bytes.data() + start, n) == crc32_bitwise(bytes.data() + start, n));
    }
  }
  for (std::size_t split = 0; split <= 50; ++split) {
    CHECK(crc32(bytes.data() + split, 50 - split, crc32(bytes.data(), split)) == crc32(bytes.data(), 50));
  }
}
