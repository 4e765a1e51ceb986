#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "int8_test_support.hpp"
#include "xquant/kernels/int8/pool.hpp"
#include "xquant/kernels/reference/int8/pool.hpp"

using namespace xquant;
using namespace xquant::kernels;
using int8::global_avg_pool_params;
using int8::nhwc_shape;

namespace {

void compare_max_pool(const std::vector<std::uint8_t>& x, const nhwc_shape& in) {
  const nhwc_shape o = int8::max_pool2x2_output(in);
  std::vector<std::uint8_t> want(o.size());
  reference::int8::max_pool2x2(x.data(), in, want.data());
  int8_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    std::vector<std::uint8_t> got(o.size());
    int8::max_pool2x2<Arch>(x.data(), in, got.data());
    INFO("arch ", std::string(Arch::name()), ", in [", in.n, ", ", in.h, ", ", in.w, ", ", in.c, "]");
    CHECK_MESSAGE(want == got, int8_test::first_difference(want, got));
  });
}

std::vector<std::uint8_t> average_reference(const std::vector<std::uint8_t>& x, const global_avg_pool_params& p) {
  std::vector<std::uint8_t> out(p.in.n * p.in.c);
  reference::int8::global_avg_pool(x.data(), p, out.data());
  return out;
}

void compare_average(const std::vector<std::uint8_t>& x, const global_avg_pool_params& p) {
  const std::vector<std::uint8_t> want = average_reference(x, p);
  int8_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    std::vector<std::uint8_t> got(want.size());
    int8::global_avg_pool<Arch>(x.data(), p, got.data());
    INFO("arch ", std::string(Arch::name()), ", in [", p.in.n, ", ", p.in.h, ", ", p.in.w, ", ", p.in.c, "], shift ",
         p.requant.shift);
    CHECK_MESSAGE(want == got, int8_test::first_difference(want, got));
  });
}

/// Pool inputs: h, w >= 2, even and odd, and pixel counts around the batch widths.
std::vector<std::array<std::size_t, 2>> pool_spatial() {
  std::vector<std::array<std::size_t, 2>> shapes;
  for (const auto& hw : int8_test::odd_spatial()) shapes.push_back({hw[0] + 1, hw[1] + 1});
  shapes.push_back({14, 14});
  shapes.push_back({7, 66});
  return shapes;
}

}  // namespace

TEST_CASE("max pool 2x2 int8: hand-made, floor mode drops the odd last row and column") {
  // [1][3][3][2]: channel 0 = 0..8, channel 1 = 80 - 10 i; the last row / column hold 255s
  // that floor mode must ignore.
  std::vector<std::uint8_t> x(18);
  for (std::size_t i = 0; i < 9; ++i) {
    const bool dropped = i % 3 == 2 || i / 3 == 2;
    x[2 * i] = dropped ? 255 : static_cast<std::uint8_t>(i);
    x[2 * i + 1] = dropped ? 255 : static_cast<std::uint8_t>(80 - 10 * i);
  }
  const nhwc_shape in{1, 3, 3, 2};
  REQUIRE(int8::max_pool2x2_output(in) == nhwc_shape{1, 1, 1, 2});
  // Room beyond the 2 outputs: GCC 12 at -O3 sees the constant shape and warns
  // (-Wstringop-overflow) about the 8-byte stores of its vectorised loop, which never run.
  std::vector<std::uint8_t> out(64);
  reference::int8::max_pool2x2(x.data(), in, out.data());
  CHECK(int{out[0]} == 4);   // max(0, 1, 3, 4)
  CHECK(int{out[1]} == 80);  // max(80, 70, 50, 40)
  compare_max_pool(x, in);
  CHECK_THROWS_AS((void)int8::max_pool2x2_output({1, 1, 4, 2}), shape_error);
  CHECK_THROWS_AS((void)int8::max_pool2x2_output({1, 4, 4, 0}), shape_error);
  CHECK(int8::max_pool2x2_output({3, 5, 4, 7}) == nhwc_shape{3, 2, 2, 7});
}

TEST_CASE("max pool 2x2 int8: every arch equals the reference on odd sizes") {
  int8_test::generator gen(17);
  for (std::size_t c : int8_test::odd_sizes()) {
    for (const auto& hw : pool_spatial()) {
      const nhwc_shape in{(c + hw[1]) % 2 ? 3u : 1u, hw[0], hw[1], c};
      compare_max_pool(gen.bytes(in.size(), hw[0] % 3 == 0 ? 2 : 8), in);
    }
  }
}

TEST_CASE("global average pool int8: hand-made rounding, half away from zero") {
  const auto run = [](std::vector<std::uint8_t> x, nhwc_shape in, std::int32_t zp_in, float s_in, float s_out,
                      std::int32_t zp_out) {
    const global_avg_pool_params p = int8::make_global_avg_pool_params(in, s_in, zp_in, s_out, zp_out);
    compare_average(x, p);
    return average_reference(x, p);
  };
  CHECK(run({1, 2, 3, 4}, {1, 2, 2, 1}, 0, 1.0f, 1.0f, 0)[0] == 3);    // 2.5 -> 3
  CHECK(run({0, 0, 1, 1}, {1, 2, 2, 1}, 1, 1.0f, 1.0f, 7)[0] == 6);    // -0.5 -> -1
  CHECK(run({0, 0, 0, 1}, {1, 2, 2, 1}, 1, 1.0f, 1.0f, 5)[0] == 4);    // -0.75 -> -1
  CHECK(run({9, 9, 9, 10}, {1, 2, 2, 1}, 0, 2.0f, 1.0f, 0)[0] == 19);  // 18.5 -> 19
  CHECK(run({200, 200}, {1, 1, 2, 1}, 0, 1.0f, 0.5f, 100)[0] == 255);  // clamp
  // Two channels, two images: channel means 2 and 5, 100 and 0.
  CHECK(run({1, 4, 3, 6, 100, 0, 100, 0}, {2, 1, 2, 2}, 0, 1.0f, 1.0f, 0) == std::vector<std::uint8_t>{2, 5, 100, 0});
}

TEST_CASE("global average pool int8: within one step of float64, exact away from ties") {
  int8_test::generator gen(23);
  int cases = 0, exact = 0;
  for (std::size_t c : int8_test::odd_sizes()) {
    for (const auto& hw : pool_spatial()) {
      const nhwc_shape in{c % 2 ? 3u : 1u, hw[0], hw[1], c};
      const float s_in = gen.log_uniform(1e-3f, 1.0f);
      const float s_out = s_in * gen.log_uniform(0.05f, 2.0f);
      const int zp_in = gen.uniform(0, 255), zp_out = gen.uniform(0, 255);
      const global_avg_pool_params p = int8::make_global_avg_pool_params(in, s_in, zp_in, s_out, zp_out);
      const std::vector<std::uint8_t> x = gen.bytes(in.size(), hw[0] % 2 ? 3 : 30);
      compare_average(x, p);
      const std::vector<std::uint8_t> got = average_reference(x, p);
      const double pixels = static_cast<double>(in.h * in.w);
      for (std::size_t n = 0; n < in.n; ++n) {
        for (std::size_t ch = 0; ch < c; ++ch) {
          double sum = 0;
          for (std::size_t i = 0; i < in.h * in.w; ++i) sum += x[(n * in.h * in.w + i) * c + ch];
          const double v = (sum - pixels * zp_in) * s_in / (s_out * pixels);
          const double want = std::clamp(zp_out + std::round(v), 0.0, 255.0);
          const double diff = std::abs(got[n * c + ch] - want);
          REQUIRE(diff <= 1.0);
          ++cases;
          if (diff == 0) {
            ++exact;
          } else {  // only where |v| lies just below a tie, within M's upward error
            INFO("v = ", v);
            const double frac = std::abs(v - std::trunc(v));
            CHECK(frac < 0.5);
            CHECK(0.5 - frac <= std::abs(v) * 0x1p-23 + 1e-12);
          }
        }
      }
    }
  }
  MESSAGE("global average pool: ", exact, " of ", cases, " outputs equal the float64 reference");
  CHECK(exact >= cases * 99 / 100);
}

TEST_CASE("global average pool int8: equal scales give the exact integer mean, ties away from zero") {
  // s_out == s_in: out = zp_out + round_half_away((sum - P zp_in) / P), checked in integers.
  int8_test::generator gen(29);
  int ties = 0;
  const std::size_t shapes[][2] = {{2, 2}, {2, 3}, {4, 4}, {14, 14}, {7, 7}, {10, 10}, {28, 28}, {6, 20}};
  for (const auto& hw : shapes) {
    for (int trial = 0; trial < 4; ++trial) {
      const nhwc_shape in{2, hw[0], hw[1], 19};
      const float s = gen.log_uniform(1e-3f, 1.0f);
      const int zp_in = gen.uniform(0, 255), zp_out = gen.uniform(0, 255);
      const global_avg_pool_params p = int8::make_global_avg_pool_params(in, s, zp_in, s, zp_out);
      // Each channel: a base value b everywhere plus 1 on m pixels, so that the mean is
      // b + m / P; m = P / 2 (an exact tie) half of the time when P is even.
      const std::size_t count = hw[0] * hw[1];
      std::vector<std::uint8_t> x(in.size());
      for (std::size_t n = 0; n < in.n; ++n) {
        for (std::size_t c = 0; c < in.c; ++c) {
          const int b = gen.uniform(0, 254);
          const int m = count % 2 == 0 && gen.uniform(0, 1) ? static_cast<int>(count / 2)
                                                            : gen.uniform(0, static_cast<int>(count) - 1);
          for (std::size_t i = 0; i < count; ++i) {
            x[(n * count + i) * in.c + c] = static_cast<std::uint8_t>(b + (static_cast<int>(i) < m ? 1 : 0));
          }
        }
      }
      compare_average(x, p);
      const std::vector<std::uint8_t> got = average_reference(x, p);
      const long long pixels = static_cast<long long>(count);
      for (std::size_t n = 0; n < in.n; ++n) {
        for (std::size_t c = 0; c < in.c; ++c) {
          long long acc = -pixels * zp_in;
          for (std::size_t i = 0; i < count; ++i) acc += x[(n * count + i) * in.c + c];
          const long long mag = (2 * std::abs(acc) + pixels) / (2 * pixels);  // floor(|acc| / P + 1/2)
          ties += (2 * std::abs(acc)) % (2 * pixels) == pixels;
          const long long want = std::clamp(zp_out + (acc < 0 ? -mag : mag), 0LL, 255LL);
          REQUIRE(got[n * in.c + c] == want);
        }
      }
    }
  }
  MESSAGE("exact ties met: ", ties);
  CHECK(ties > 100);
}

TEST_CASE("global average pool int8: the multiplier is the smallest float32 above the quotient") {
  for (std::size_t pixels : {1u, 3u, 49u, 196u, 784u, 1000u}) {
    for (float s_in : {1.0f, 0.1f, 0.0237f}) {
      for (float s_out : {s_in, 0.3f, 0.011f}) {
        const float m = int8::average_multiplier(s_in, s_out, pixels);
        const long double exact = static_cast<long double>(s_in) / (static_cast<long double>(s_out) * pixels);
        INFO("pixels ", pixels, ", s_in ", s_in, ", s_out ", s_out);
        CHECK(static_cast<long double>(m) >= exact * (1 - 0x1p-60L));
        CHECK(static_cast<long double>(std::nextafter(m, 0.0f)) < exact);
      }
    }
  }
}

TEST_CASE("global average pool int8: extremes and parameter validation") {
  // All 255 with zp_in 0 and all 0 with zp_in 255: the largest centred sums, both signs.
  for (std::size_t c : {1u, 16u, 33u}) {
    const nhwc_shape in{1, 64, 65, c};
    const global_avg_pool_params up = int8::make_global_avg_pool_params(in, 0.5f, 0, 0.5f, 0);
    CHECK(average_reference(std::vector<std::uint8_t>(in.size(), 255), up) == std::vector<std::uint8_t>(c, 255));
    compare_average(std::vector<std::uint8_t>(in.size(), 255), up);
    const global_avg_pool_params down = int8::make_global_avg_pool_params(in, 0.5f, 255, 0.25f, 255, 3, 250);
    CHECK(average_reference(std::vector<std::uint8_t>(in.size(), 0), down) == std::vector<std::uint8_t>(c, 3));
    compare_average(std::vector<std::uint8_t>(in.size(), 0), down);
  }
  const nhwc_shape in{1, 7, 7, 8};
  CHECK_THROWS_AS((void)int8::make_global_avg_pool_params(in, 0.0f, 0, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_global_avg_pool_params(in, 1.0f, 0, NAN, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_global_avg_pool_params(in, 1.0f, 256, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_global_avg_pool_params(in, 1.0f, 0, 1.0f, -1), value_error);
  CHECK_THROWS_AS((void)int8::make_global_avg_pool_params(in, 1.0f, 0, 1.0f, 0, 10, 5), value_error);
  CHECK_THROWS_AS((void)int8::make_global_avg_pool_params({1, 0, 7, 8}, 1.0f, 0, 1.0f, 0), shape_error);
  CHECK_THROWS_AS((void)int8::make_global_avg_pool_params({1, 4000, 4000, 1}, 1.0f, 0, 1.0f, 0), shape_error);
}
