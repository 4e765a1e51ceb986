#include <doctest/doctest.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "int8_test_support.hpp"
#include "xquant/kernels/int8/boundary.hpp"
#include "xquant/kernels/reference/int8/boundary.hpp"
#include "xquant/quant/quantize.hpp"
#include "xquant/quant/scheme.hpp"

using namespace xquant;
using namespace xquant::kernels;
using int8::activation_quant;
using int8::nhwc_shape;

namespace {

using uint8_activation = scheme<unsigned_bits<8>, asymmetric>;  // per tensor, round half to even
constexpr float inf = std::numeric_limits<float>::infinity();

/// Floats that stress the rounding and the clamp for scale s: exact ties, neighbours of
/// ties, the saturation edges, infinities, huge, tiny and negative zero.
std::vector<float> hard_values(int8_test::generator& gen, float s, std::size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) {
    const float k = static_cast<float>(gen.uniform(-300, 300));
    switch (gen.uniform(0, 9)) {
      case 0:
        x = (k + 0.5f) * s;  // a tie when exact
        break;
      case 1:
        x = std::nextafter((k + 0.5f) * s, gen.uniform(0, 1) ? inf : -inf);
        break;
      case 2: {
        const float special[] = {inf, -inf, 3e38f, -3e38f, 0.0f, -0.0f, 1e-40f, -1e-40f};
        x = special[gen.uniform(0, 7)];
        break;
      }
      default:
        x = static_cast<float>(gen.uniform_real(-300.0, 300.0)) * s;
    }
  }
  return v;
}

activation_quant random_quant(int8_test::generator& gen) {
  return int8::make_activation_quant(
      gen.uniform(0, 3) == 0 ? std::ldexp(1.0f, gen.uniform(-8, 2)) : gen.log_uniform(1e-4f, 10.0f),
      gen.uniform(0, 255));
}

void compare_quantize(const std::vector<float>& x, const nhwc_shape& s, const activation_quant& q, bool has_nan) {
  std::vector<std::uint8_t> want(s.size());
  CHECK(reference::int8::quantize_nchw_to_nhwc(x.data(), s, q, want.data()) == !has_nan);
  int8_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    std::vector<std::uint8_t> got(s.size());
    INFO("arch ", std::string(Arch::name()), ", shape [", s.n, ", ", s.h, ", ", s.w, ", ", s.c, "], scale ", q.scale,
         ", zp ", q.zero_point);
    CHECK(int8::quantize_nchw_to_nhwc<Arch>(x.data(), s, q, got.data()) == !has_nan);
    if (has_nan) {  // NaN bytes are unspecified: compare the others
      const std::size_t plane = s.h * s.w;
      for (std::size_t n = 0; n < s.n; ++n) {
        for (std::size_t c = 0; c < s.c; ++c) {
          for (std::size_t i = 0; i < plane; ++i) {
            if (std::isnan(x[(n * s.c + c) * plane + i]))
              got[(n * plane + i) * s.c + c] = want[(n * plane + i) * s.c + c];
          }
        }
      }
    }
    CHECK_MESSAGE(want == got, int8_test::first_difference(want, got));
  });
}

}  // namespace

TEST_CASE("boundary int8: quantize is quantize_value of the uint8 activation scheme, bit for bit") {
  int8_test::generator gen(41);
  for (int trial = 0; trial < 200; ++trial) {
    const activation_quant q = random_quant(gen);
    for (const float x : hard_values(gen, q.scale, 500)) {
      INFO("x ", x, ", scale ", q.scale, ", zero point ", q.zero_point);
      REQUIRE(int{reference::int8::quantize(x, q)} == quantize_value<uint8_activation>(x, q.scale, q.zero_point));
    }
  }
}

TEST_CASE("boundary int8: hand-made quantization, ties to even, saturation") {
  const activation_quant q = int8::make_activation_quant(0.5f, 10);
  CHECK(int{reference::int8::quantize(1.25f, q)} == 12);  // 2.5 -> 2
  CHECK(int{reference::int8::quantize(1.75f, q)} == 14);  // 3.5 -> 4
  CHECK(int{reference::int8::quantize(-1.25f, q)} == 8);  // -2.5 -> -2
  CHECK(int{reference::int8::quantize(-100.0f, q)} == 0);
  CHECK(int{reference::int8::quantize(122.5f, q)} == 255);  // 245 + 10
  CHECK(int{reference::int8::quantize(inf, q)} == 255);
  CHECK(int{reference::int8::quantize(-inf, q)} == 0);
  // NCHW [1][2][1][2] -> NHWC [1][1][2][2].
  const std::vector<float> x = {0.0f, 1.0f, 2.0f, 3.0f};  // c0: 0, 1; c1: 2, 3
  std::vector<std::uint8_t> out(4);
  CHECK(reference::int8::quantize_nchw_to_nhwc(x.data(), {1, 1, 2, 2}, q, out.data()));
  CHECK(out == std::vector<std::uint8_t>{10, 14, 12, 16});
  compare_quantize(x, {1, 1, 2, 2}, q, false);
}

TEST_CASE("boundary int8: every arch quantizes like the reference on odd sizes") {
  int8_test::generator gen(43);
  std::vector<std::array<std::size_t, 2>> spatial = int8_test::odd_spatial();
  spatial.push_back({28, 28});
  for (std::size_t c : int8_test::odd_sizes()) {
    for (const auto& hw : spatial) {
      if (c > 17 && hw[0] * hw[1] > 100) continue;
      const nhwc_shape s{(c + hw[0]) % 2 ? 3u : 1u, hw[0], hw[1], c};
      const activation_quant q = random_quant(gen);
      compare_quantize(hard_values(gen, q.scale, s.size()), s, q, false);
    }
  }
  // NaN anywhere (a full batch or the scalar tail): false, and the other bytes still right.
  for (std::size_t where : {0u, 5u, 20u, 44u}) {
    const nhwc_shape s{1, 3, 15, 1};
    const activation_quant q = random_quant(gen);
    std::vector<float> x = hard_values(gen, q.scale, s.size());
    x[where] = std::numeric_limits<float>::quiet_NaN();
    compare_quantize(x, s, q, true);
    compare_quantize(x, {1, 3, 5, 3}, q, true);
  }
}

TEST_CASE("boundary int8: dequantize is dequantize_value, every arch bit for bit") {
  int8_test::generator gen(47);
  for (int trial = 0; trial < 50; ++trial) {
    const activation_quant q = random_quant(gen);
    std::vector<std::uint8_t> v(256);
    for (std::size_t i = 0; i < 256; ++i) v[i] = static_cast<std::uint8_t>(i);
    std::vector<float> want(256);
    reference::int8::dequantize(v.data(), v.size(), q, want.data());
    for (std::size_t i = 0; i < 256; ++i) {
      REQUIRE(std::bit_cast<std::uint32_t>(want[i]) ==
              std::bit_cast<std::uint32_t>(dequantize_value(v[i], q.scale, q.zero_point)));
    }
  }
  for (std::size_t n : int8_test::odd_sizes()) {
    const activation_quant q = random_quant(gen);
    const std::vector<std::uint8_t> v = gen.bytes(n);
    std::vector<float> want(n);
    reference::int8::dequantize(v.data(), n, q, want.data());
    int8_test::for_each_runnable_arch([&](auto arch) {
      using Arch = decltype(arch);
      std::vector<float> got(n);
      int8::dequantize<Arch>(v.data(), n, q, got.data());
      INFO("arch ", std::string(Arch::name()), ", n ", n);
      CHECK(std::memcmp(want.data(), got.data(), n * sizeof(float)) == 0);
    });
  }
}

TEST_CASE("boundary int8: parameter validation") {
  CHECK_NOTHROW((void)int8::make_activation_quant(std::numeric_limits<float>::min(), 0));
  CHECK_THROWS_AS((void)int8::make_activation_quant(0.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_activation_quant(1e-40f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_activation_quant(-1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_activation_quant(inf, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_activation_quant(1.0f, 256), value_error);
  CHECK_THROWS_AS((void)int8::make_activation_quant(1.0f, -1), value_error);
}
