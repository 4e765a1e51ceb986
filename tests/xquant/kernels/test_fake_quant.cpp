#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "xquant/kernels/fake_quant.hpp"
#include "xquant/kernels/reference/fake_quant.hpp"
#include "xquant/kernels/simd.hpp"
#include "xquant/quant/quantize.hpp"
#include "xquant/quant/scheme.hpp"
#include "tested_archs.hpp"

using namespace xquant;
using namespace xquant::kernels;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();

/// "" when the float arrays are equal bit for bit, else the first difference.
std::string bit_difference(const std::vector<float>& a, const std::vector<float>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) {
      return "index " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
    }
  }
  return "";
}

struct case_gen {
  std::mt19937 rng;
  explicit case_gen(unsigned seed) : rng(seed) {}

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
  float real(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }

  /// Values around the grid of `a`: ties, near-ties, the end levels and beyond, zeros of
  /// both signs, infinities and random reals.
  std::vector<float> values(std::size_t n, const fake_quant_args& a) {
    std::vector<float> x(n);
    for (float& v : x) {
      const float k = static_cast<float>(uniform(static_cast<int>(a.lo) - 3, static_cast<int>(a.hi) + 3));
      switch (uniform(0, 9)) {
        case 0: v = (k + 0.5f) * a.scale; break;                                      // ties
        case 1: v = std::nextafter((k + 0.5f) * a.scale, uniform(0, 1) ? inf : -inf); break;
        case 2: v = k * a.scale; break;                                               // on the grid
        case 3: v = uniform(0, 1) ? 0.0f : -0.0f; break;
        case 4: v = uniform(0, 1) ? inf : -inf; break;
        case 5: v = real(-1e30f, 1e30f); break;
        default: v = real(a.lo - 4.0f, a.hi + 4.0f) * a.scale; break;
      }
    }
    return x;
  }

  fake_quant_args args() {
    fake_quant_args a;
    a.scale = std::exp2(real(-20.0f, 4.0f));
    switch (uniform(0, 4)) {
      case 0: a.lo = -127; a.hi = 127; break;                 // narrow int8, symmetric
      case 1: { const int z = uniform(0, 255); a.lo = static_cast<float>(-z); a.hi = static_cast<float>(255 - z); break; }
      case 2: { const int z = uniform(0, 15); a.lo = static_cast<float>(-z); a.hi = static_cast<float>(15 - z); break; }
      case 3: { const int z = uniform(0, 65535); a.lo = static_cast<float>(-z); a.hi = static_cast<float>(65535 - z); break; }
      default: a.lo = -32768; a.hi = 32767; break;
    }
    return a;
  }
};

}  // namespace

TEST_CASE("kernels::fake_quant: the reference is ONNX quantize then dequantize") {
  using S = scheme<unsigned_bits<8>, asymmetric>;
  case_gen gen(1);
  for (int t = 0; t < 200; ++t) {
    const std::int32_t z = gen.uniform(0, 255);
    fake_quant_args a;
    a.scale = std::exp2(gen.real(-12.0f, 2.0f));
    a.lo = static_cast<float>(S::qmin - z);
    a.hi = static_cast<float>(S::qmax - z);
    const std::vector<float> x = gen.values(64, a);
    std::vector<float> y(x.size()), onnx(x.size());
    std::vector<std::uint8_t> mask(mask_bytes(x.size()), 0);
    CHECK_FALSE(reference::fake_quant(x.data(), x.size(), a, y.data(), mask.data(), 0));
    for (std::size_t i = 0; i < x.size(); ++i) {
      onnx[i] = dequantize_value(quantize_value<S>(x[i], a.scale, z), a.scale, z);
      const float r = std::nearbyint(x[i] / a.scale) + static_cast<float>(z);
      const bool inside = r >= S::qmin && r <= S::qmax;
      REQUIRE(reference::mask_bit(mask.data(), i) == inside);
    }
    REQUIRE(bit_difference(y, onnx) == "");
  }
}

TEST_CASE("kernels::fake_quant: every arch equals the reference, any offset and length") {
  case_gen gen(2);
  const int archs = xquant_test::for_each_runnable_arch([&](auto arch) {
    using A = decltype(arch);
    CAPTURE(A::name());
    for (int t = 0; t < 300; ++t) {
      const fake_quant_args a = gen.args();
      const std::size_t n = static_cast<std::size_t>(t < 100 ? gen.uniform(0, 40) : gen.uniform(0, 600));
      const std::size_t bit0 = static_cast<std::size_t>(gen.uniform(0, 23));
      const std::vector<float> x = gen.values(n, a);
      std::vector<float> y_ref(n), y(n), y_nomask(n);
      // Pre-set bits around the run: they must survive (ORed), as a neighbouring run's would.
      std::vector<std::uint8_t> m_ref(mask_bytes(bit0 + n + 9), 0);
      for (std::size_t k = 0; k < bit0; ++k) reference::set_mask_bit(m_ref.data(), k);
      for (std::size_t k = bit0 + n; k < 8 * m_ref.size(); k += 2) reference::set_mask_bit(m_ref.data(), k);
      std::vector<std::uint8_t> m = m_ref;
      CHECK_FALSE(reference::fake_quant(x.data(), n, a, y_ref.data(), m_ref.data(), bit0));
      CHECK_FALSE(kernels::fake_quant<A>(x.data(), n, a, y.data(), m.data(), bit0));
      CHECK_FALSE(kernels::fake_quant<A>(x.data(), n, a, y_nomask.data()));
      REQUIRE(bit_difference(y, y_ref) == "");
      REQUIRE(bit_difference(y_nomask, y_ref) == "");
      REQUIRE(m == m_ref);
    }
  });
  CHECK(archs >= 1);
}

TEST_CASE("kernels::fake_quant: a NaN anywhere is reported") {
  case_gen gen(3);
  xquant_test::for_each_runnable_arch([&](auto arch) {
    using A = decltype(arch);
    const fake_quant_args a = gen.args();
    for (std::size_t bit0 : {0u, 3u}) {
      for (std::size_t at = 0; at < 70; ++at) {
        std::vector<float> x = gen.values(70, a), y(70);
        x[at] = std::numeric_limits<float>::quiet_NaN();
        std::vector<std::uint8_t> m(mask_bytes(bit0 + 70), 0);
        CHECK(kernels::fake_quant<A>(x.data(), x.size(), a, y.data(), m.data(), bit0));
        CHECK(kernels::fake_quant<A>(x.data(), x.size(), a, y.data()));
      }
    }
  });
}

TEST_CASE("kernels::masked_add and masked_copy: every arch equals the reference, -0.0 kept outside the mask") {
  case_gen gen(4);
  xquant_test::for_each_runnable_arch([&](auto arch) {
    using A = decltype(arch);
    for (int t = 0; t < 200; ++t) {
      const std::size_t n = static_cast<std::size_t>(gen.uniform(0, 300));
      const std::size_t bit0 = static_cast<std::size_t>(gen.uniform(0, 17));
      std::vector<float> dy(n), dx(n);
      for (std::size_t i = 0; i < n; ++i) {
        dy[i] = gen.uniform(0, 5) == 0 ? (gen.uniform(0, 1) ? 0.0f : -0.0f) : gen.real(-2.0f, 2.0f);
        dx[i] = gen.uniform(0, 3) == 0 ? -0.0f : gen.real(-2.0f, 2.0f);
      }
      std::vector<std::uint8_t> m(mask_bytes(bit0 + n));
      for (auto& b : m) b = static_cast<std::uint8_t>(gen.uniform(0, 255));
      std::vector<float> ref = dx;
      reference::masked_add(dy.data(), n, m.data(), bit0, ref.data());
      kernels::masked_add<A>(dy.data(), n, m.data(), bit0, dx.data());
      REQUIRE(bit_difference(dx, ref) == "");
      // masked_copy == masked_add into zeros, whatever the buffer held before.
      std::vector<float> zeros(n, 0.0f), copy(n, std::numeric_limits<float>::quiet_NaN()), copy_ref(n, 1.0f);
      reference::masked_add(dy.data(), n, m.data(), bit0, zeros.data());
      reference::masked_copy(dy.data(), n, m.data(), bit0, copy_ref.data());
      kernels::masked_copy<A>(dy.data(), n, m.data(), bit0, copy.data());
      REQUIRE(bit_difference(copy_ref, zeros) == "");
      REQUIRE(bit_difference(copy, zeros) == "");
    }
  });
}

TEST_CASE("kernels::min_max: every arch equals the reference, NaN and infinities") {
  case_gen gen(5);
  xquant_test::for_each_runnable_arch([&](auto arch) {
    using A = decltype(arch);
    for (int t = 0; t < 200; ++t) {
      const std::size_t n = static_cast<std::size_t>(gen.uniform(0, 500));
      std::vector<float> x(n);
      for (float& v : x) v = gen.uniform(0, 50) == 0 ? (gen.uniform(0, 1) ? inf : -inf) : gen.real(-1e3f, 1e3f);
      float lo = inf, hi = -inf, lo_ref = inf, hi_ref = -inf;
      CHECK_FALSE(reference::min_max(x.data(), n, lo_ref, hi_ref));
      CHECK_FALSE(kernels::min_max<A>(x.data(), n, lo, hi));
      REQUIRE(lo == lo_ref);
      REQUIRE(hi == hi_ref);
      // Starting from a given range widens it.
      float lo2 = -5e3f, hi2 = 5e3f;
      CHECK_FALSE(kernels::min_max<A>(x.data(), n, lo2, hi2));
      CHECK(lo2 == std::min(-5e3f, lo_ref));
      CHECK(hi2 == std::max(5e3f, hi_ref));
      if (n > 0) {
        x[static_cast<std::size_t>(gen.uniform(0, static_cast<int>(n) - 1))] = std::numeric_limits<float>::quiet_NaN();
        float a = inf, b = -inf;
        CHECK(kernels::min_max<A>(x.data(), n, a, b));
      }
    }
  });
}

TEST_CASE("kernels::fake_quant: lane bits, the movemask overloads and the portable fallback agree") {
  xquant_test::for_each_runnable_arch([&](auto arch) {
    using A = decltype(arch);
    using namespace fake_quant_detail;
    constexpr std::size_t w = f32<A>::size;
    const i32<A> lane_bit = lane_bit_constants<A>();
    for (std::uint64_t bits = 0; bits < (std::uint64_t{1} << w); bits += w > 8 ? 257 : 1) {
      const mask_batch<A> m = lanes_of<A>(bits, lane_bit);
      CHECK(lane_bits<A>(m, A{}) == bits);
      CHECK(lane_bits<A>(m, xsimd::generic{}) == bits);
    }
  });
}
