#pragma once
// Shared by the int8 kernel tests: running every compiled-in arch the CPU has, the odd sizes
// the kernels are checked on, random uint8 / int8 data with extremes, and first-difference
// messages.

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "xquant/kernels/simd.hpp"
#include "../tested_archs.hpp"

namespace int8_test {

using xquant_test::for_each_runnable_arch;

/// Fills output bytes around and after what a kernel may write (ASan and the checks see
/// writes past the end).
constexpr std::uint8_t sentinel = 0xA5;

/// Channel and pixel counts around the batch widths: 1..10, 15..17, 31..33, 63..65.
inline std::vector<std::size_t> odd_sizes() {
  std::vector<std::size_t> sizes;
  for (std::size_t s = 1; s <= 10; ++s) sizes.push_back(s);
  for (std::size_t base : {16, 32, 64}) {
    for (std::size_t s = base - 1; s <= base + 1; ++s) sizes.push_back(s);
  }
  return sizes;
}

/// (h, w) pairs whose pixel counts h * w run over odd_sizes(): the most square factor pair,
/// every other one transposed.
inline std::vector<std::array<std::size_t, 2>> odd_spatial() {
  std::vector<std::array<std::size_t, 2>> shapes;
  for (std::size_t s : odd_sizes()) {
    std::size_t h = 1;
    for (std::size_t d = 1; d * d <= s; ++d) {
      if (s % d == 0) h = d;
    }
    shapes.push_back(shapes.size() % 2 ? std::array<std::size_t, 2>{s / h, h} : std::array<std::size_t, 2>{h, s / h});
  }
  return shapes;
}

struct generator {
  std::mt19937 rng;

  explicit generator(unsigned seed) : rng(seed) {}

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
  double uniform_real(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

  /// Log-uniform in [lo, hi].
  float log_uniform(float lo, float hi) {
    return static_cast<float>(std::exp2(uniform_real(std::log2(lo), std::log2(hi))));
  }

  /// Random bytes; one draw in `extreme` is 0 or 255.
  std::vector<std::uint8_t> bytes(std::size_t n, int extreme = 8) {
    std::vector<std::uint8_t> v(n);
    for (auto& x : v)
      x = static_cast<std::uint8_t>(uniform(0, extreme - 1) == 0 ? 255 * uniform(0, 1) : uniform(0, 255));
    return v;
  }

  /// Random int8 weights in [-128, 127]; one draw in `extreme` is -128 or 127.
  std::vector<std::int8_t> weights(std::size_t n, int extreme = 8) {
    std::vector<std::int8_t> v(n);
    for (auto& x : v) {
      x = static_cast<std::int8_t>(uniform(0, extreme - 1) == 0 ? (uniform(0, 1) ? 127 : -128) : uniform(-128, 127));
    }
    return v;
  }
};

/// "" when equal, else the first differing index and values.
template <class T>
std::string first_difference(const std::vector<T>& want, const std::vector<T>& got) {
  if (want.size() != got.size()) return "sizes differ";
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      std::ostringstream s;
      s << "size " << want.size() << ", first difference at " << i << ": reference " << +want[i] << ", simd "
        << +got[i];
      return s.str();
    }
  }
  return "";
}

}  // namespace int8_test
