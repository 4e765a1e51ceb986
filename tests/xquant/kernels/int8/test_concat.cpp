#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "int8_test_support.hpp"
#include "xquant/kernels/int8/concat.hpp"
#include "xquant/kernels/reference/int8/concat.hpp"

using namespace xquant;
using namespace xquant::kernels;
using int8::concat_input;
using int8::rescale_params;

namespace {

int rescale_one(int x, const rescale_params& k) { return reference::int8::rescale(static_cast<std::uint8_t>(x), k); }

/// A random input grid relative to the output's: ratios from tiny to near the limit, the
/// output grid itself (a copy) and powers of two (exact ties) often.
rescale_params random_params(int8_test::generator& gen, float s_out, int zp_out, int qmin, int qmax) {
  float ratio = 1.0f;
  switch (gen.uniform(0, 5)) {
    case 0:
      ratio = gen.log_uniform(1e-6f, 1e-2f);
      break;
    case 1:
      ratio = gen.log_uniform(2.0f, 1000.0f);
      break;
    case 2:
      ratio = std::ldexp(1.0f, gen.uniform(-4, 3));
      break;
    case 3:
      return int8::make_rescale_params(s_out, zp_out, s_out, zp_out, qmin, qmax);  // same grid
    default:
      ratio = gen.log_uniform(0.1f, 2.0f);
  }
  return int8::make_rescale_params(s_out * ratio, gen.uniform(0, 255), s_out, zp_out, qmin, qmax);
}

}  // namespace

TEST_CASE("concat int8: rescale by hand, copies, ties away from zero, clamp") {
  const rescale_params same = int8::make_rescale_params(0.1f, 7, 0.1f, 7);
  CHECK(same.is_copy());
  for (int x : {0, 1, 7, 128, 255}) CHECK(rescale_one(x, same) == x);
  const rescale_params clamped = int8::make_rescale_params(0.1f, 7, 0.1f, 7, 7, 200);
  CHECK_FALSE(clamped.is_copy());
  CHECK(rescale_one(3, clamped) == 7);
  CHECK(rescale_one(250, clamped) == 200);
  const rescale_params moved = int8::make_rescale_params(0.1f, 7, 0.1f, 17);
  CHECK_FALSE(moved.is_copy());
  CHECK(rescale_one(0, moved) == 10);
  CHECK(rescale_one(250, moved) == 255);
  // alpha = 1/2: (x - zp) / 2, ties go away from zero.
  const rescale_params half = int8::make_rescale_params(0.5f, 100, 1.0f, 128);
  CHECK(rescale_one(101, half) == 129);  // 0.5 -> 1
  CHECK(rescale_one(99, half) == 127);   // -0.5 -> -1
  CHECK(rescale_one(103, half) == 130);  // 1.5 -> 2
  CHECK(rescale_one(97, half) == 126);   // -1.5 -> -2
  // alpha = 3: 3 * (x - 10) + 20.
  const rescale_params triple = int8::make_rescale_params(0.3f, 10, 0.1f, 20);
  CHECK(rescale_one(12, triple) == 26);
  CHECK(rescale_one(5, triple) == 5);
  CHECK(rescale_one(0, triple) == 0);
}

TEST_CASE("concat int8: parameters") {
  const rescale_params k = int8::make_rescale_params(0.02f, 3, 0.04f, 9, 9, 200);
  CHECK(k.shift == 21);  // alpha = 1/2
  CHECK(k.multiplier == 1 << 20);
  CHECK(k.zero_point_in == 3);
  CHECK(k.zero_point == 9);
  CHECK(k.qmin == 9);
  CHECK(k.qmax == 200);
  CHECK_THROWS_AS((void)int8::make_rescale_params(0.0f, 0, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_rescale_params(1.0f, 0, NAN, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_rescale_params(INFINITY, 0, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_rescale_params(1.0f, -1, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_rescale_params(1.0f, 0, 1.0f, 256), value_error);
  CHECK_THROWS_AS((void)int8::make_rescale_params(1.0f, 0, 1.0f, 0, 9, 8), value_error);
  CHECK_THROWS_AS((void)int8::make_rescale_params(1024.0f, 0, 1.0f, 0), value_error);
  CHECK_NOTHROW((void)int8::make_rescale_params(1023.0f, 0, 1.0f, 0));
}

// The integer arithmetic is exactly round-half-away-from-zero of A (x - zp) / 2^S (std::round
// in float64, where that quotient is exact), for every byte and all kinds of ratios.
TEST_CASE("concat int8: rescale is the exact rounding of A (x - zp) / 2^S") {
  int8_test::generator gen(41);
  for (int trial = 0; trial < 500; ++trial) {
    const float s_out = gen.log_uniform(1e-3f, 1.0f);
    const int zp_out = gen.uniform(0, 255);
    const rescale_params k = random_params(gen, s_out, zp_out, 0, 255);
    for (int x = 0; x < 256; ++x) {
      const double v = std::ldexp(static_cast<double>(k.multiplier), -k.shift) * (x - k.zero_point_in);
      REQUIRE(rescale_one(x, k) == std::clamp(zp_out + std::round(v), 0.0, 255.0));
    }
  }
}

TEST_CASE("concat int8: rescale against the float64 value of the scales") {
  // The end-to-end claim: every output is within one step of zp_out + s_x / s_out (x - zp_x).
  int8_test::generator gen(43);
  long long cases = 0, exact = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const float s_out = gen.log_uniform(1e-3f, 1.0f);
    const float s_in = s_out * gen.log_uniform(1e-4f, 1000.0f);
    const int zp_in = gen.uniform(0, 255), zp_out = gen.uniform(0, 255);
    const rescale_params k = int8::make_rescale_params(s_in, zp_in, s_out, zp_out);
    for (int i = 0; i < 50; ++i) {
      const int x = gen.uniform(0, 255);
      const double v = static_cast<double>(s_in) / s_out * (x - zp_in);
      const double want = std::clamp(zp_out + std::round(v), 0.0, 255.0);
      const int got = rescale_one(x, k);
      REQUIRE(std::abs(got - want) <= 1.0);
      ++cases;
      exact += got == want;
    }
  }
  MESSAGE("concat rescale vs float64 scales: ", exact, " of ", cases, " exact");
  CHECK(exact >= cases * 99 / 100);
}

TEST_CASE("concat int8: every arch equals the reference on odd channel and pixel counts") {
  int8_test::generator gen(47);
  std::vector<std::size_t> channel_counts = int8_test::odd_sizes();
  channel_counts.push_back(100);
  for (std::size_t pixels : {std::size_t{1}, std::size_t{3}, std::size_t{17}}) {
    for (std::size_t c : channel_counts) {
      const float s_out = gen.log_uniform(1e-3f, 1.0f);
      const int zp_out = gen.uniform(0, 255);
      const int qmin = gen.uniform(0, 3) == 0 ? zp_out : 0, qmax = gen.uniform(0, 3) == 0 ? 250 : 255;
      // Two to four inputs, channel counts around c.
      const int count = gen.uniform(2, 4);
      std::vector<std::vector<std::uint8_t>> data;
      std::vector<concat_input> inputs;
      std::size_t total = 0;
      for (int i = 0; i < count; ++i) {
        const std::size_t ci = std::max<std::size_t>(1, c + static_cast<std::size_t>(gen.uniform(0, 2)) - 1);
        data.push_back(gen.bytes(pixels * ci));
        inputs.push_back({nullptr, ci, random_params(gen, s_out, zp_out, qmin, std::max(qmin, qmax))});
        total += ci;
      }
      for (int i = 0; i < count; ++i) inputs[static_cast<std::size_t>(i)].data = data[static_cast<std::size_t>(i)].data();
      std::vector<std::uint8_t> want(pixels * total);
      reference::int8::concat(inputs, pixels, want.data());
      // The layout: input i's channels at its offset in every pixel.
      std::size_t offset = 0;
      for (const concat_input& in : inputs) {
        for (std::size_t p = 0; p < pixels; ++p)
          for (std::size_t ch = 0; ch < in.channels; ++ch)
            REQUIRE(want[p * total + offset + ch] == rescale_one(in.data[p * in.channels + ch], in.k));
        offset += in.channels;
      }
      int8_test::for_each_runnable_arch([&](auto arch) {
        using Arch = decltype(arch);
        INFO("arch ", std::string(Arch::name()), ", pixels ", pixels, ", channels about ", c);
        std::vector<std::uint8_t> got(want.size());
        int8::concat<Arch>(inputs, pixels, got.data());
        CHECK_MESSAGE(want == got, int8_test::first_difference(want, got));
      });
    }
  }
}

TEST_CASE("concat int8: largest products at the ratio limit") {
  const rescale_params down = int8::make_rescale_params(1023.9f, 255, 1.0f, 128);
  const rescale_params up = int8::make_rescale_params(1023.9f, 0, 1.0f, 128);
  const std::vector<std::uint8_t> zeros(67, 0), full(67, 255);
  CHECK(rescale_one(0, down) == 0);
  CHECK(rescale_one(255, up) == 255);
  int8_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    std::vector<std::uint8_t> a(67), b(67);
    int8::rescale<Arch>(zeros.data(), 67, down, a.data());
    int8::rescale<Arch>(full.data(), 67, up, b.data());
    CHECK(std::all_of(a.begin(), a.end(), [](std::uint8_t v) { return v == 0; }));
    CHECK(std::all_of(b.begin(), b.end(), [](std::uint8_t v) { return v == 255; }));
  });
}
