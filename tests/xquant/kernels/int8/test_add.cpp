#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "int8_test_support.hpp"
#include "xquant/kernels/int8/add.hpp"
#include "xquant/kernels/reference/int8/add.hpp"

using namespace xquant;
using namespace xquant::kernels;
using int8::add_params;

namespace {

int add_one(int a, int b, const add_params& k) {
  return reference::int8::add(static_cast<std::uint8_t>(a), static_cast<std::uint8_t>(b), k);
}

void compare_all_archs(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b, const add_params& k) {
  std::vector<std::uint8_t> want(a.size());
  reference::int8::add(a.data(), b.data(), a.size(), k, want.data());
  int8_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    INFO("arch ", std::string(Arch::name()), ", n ", a.size(), ", A ", k.multiplier_a, ", B ", k.multiplier_b, ", S ",
         k.shift);
    std::vector<std::uint8_t> got(a.size());
    int8::add<Arch>(a.data(), b.data(), a.size(), k, got.data());
    CHECK_MESSAGE(want == got, int8_test::first_difference(want, got));
    std::vector<std::uint8_t> in_place = a;  // out == a
    int8::add<Arch>(in_place.data(), b.data(), a.size(), k, in_place.data());
    CHECK_MESSAGE(want == in_place, "in place: ", int8_test::first_difference(want, in_place));
  });
}

/// A random add: scale ratios from tiny to near max_add_ratio, a fused ReLU sometimes.
struct add_case {
  float s_a = 1, s_b = 1, s_out = 1;
  int zp_a = 0, zp_b = 0, zp_out = 0, qmin = 0;

  add_params params() const { return int8::make_add_params(s_a, zp_a, s_b, zp_b, s_out, zp_out, qmin, 255); }

  /// alpha (a - zp_a) + beta (b - zp_b) in float64.
  double real(int a, int b) const {
    return static_cast<double>(s_a) / s_out * (a - zp_a) + static_cast<double>(s_b) / s_out * (b - zp_b);
  }
};

add_case random_case(int8_test::generator& gen) {
  const auto ratio = [&] {
    switch (gen.uniform(0, 7)) {
      case 0:
        return gen.log_uniform(1e-6f, 1e-2f);
      case 1:
        return gen.log_uniform(2.0f, 1000.0f);
      case 2:
        return std::ldexp(1.0f, gen.uniform(-4, 3));  // exact ties are frequent
      default:
        return gen.log_uniform(0.1f, 2.0f);
    }
  };
  add_case c;
  c.s_out = gen.log_uniform(1e-3f, 1.0f);
  c.s_a = c.s_out * ratio();
  c.s_b = c.s_out * ratio();
  c.zp_a = gen.uniform(0, 255);
  c.zp_b = gen.uniform(0, 255);
  c.zp_out = gen.uniform(0, 255);
  c.qmin = gen.uniform(0, 3) == 0 ? c.zp_out : 0;
  return c;
}

}  // namespace

TEST_CASE("add int8: hand-made sums, saturation, fused ReLU, ties away from zero") {
  const add_params plain = int8::make_add_params(1.0f, 0, 1.0f, 0, 1.0f, 0);
  CHECK(add_one(100, 50, plain) == 150);
  CHECK(add_one(200, 100, plain) == 255);
  const add_params shifted = int8::make_add_params(1.0f, 10, 1.0f, 20, 1.0f, 5);
  CHECK(add_one(10, 20, shifted) == 5);
  CHECK(add_one(0, 20, shifted) == 0);  // 5 - 10 = -5, clamped to 0
  CHECK(add_one(13, 24, shifted) == 12);
  const add_params relu = int8::make_add_params(1.0f, 10, 1.0f, 20, 1.0f, 5, 5, 255);
  CHECK(add_one(0, 20, relu) == 5);  // real -10 -> ReLU 0 = zero point
  CHECK(add_one(13, 24, relu) == 12);
  // alpha = beta = 1/2: (a - zp) / 2 ties go away from zero.
  const add_params half = int8::make_add_params(0.5f, 100, 0.5f, 100, 1.0f, 128);
  CHECK(add_one(101, 100, half) == 129);  // 0.5 -> 1
  CHECK(add_one(99, 100, half) == 127);   // -0.5 -> -1
  CHECK(add_one(103, 100, half) == 130);  // 1.5 -> 2
  CHECK(add_one(97, 100, half) == 126);   // -1.5 -> -2
  CHECK(add_one(102, 101, half) == 130);  // 1.5 -> 2
  // Different scales: 0.3 * 10 + 0.7 * (-4) = 0.2 -> 0.
  const add_params mixed = int8::make_add_params(0.3f, 0, 0.7f, 10, 1.0f, 50);
  CHECK(add_one(10, 6, mixed) == 50);
  CHECK(add_one(255, 0, mixed) == 50 + 77 - 7);  // 76.5000030 - 6.9999999 = 69.5000031 -> 70
}

TEST_CASE("add int8: parameters") {
  const add_params k = int8::make_add_params(0.02f, 3, 0.01f, 7, 0.04f, 9, 9, 200);
  // Ratios 1/2 and 1/4: the largest, 0.5 * 2^0, gets S = 21 - 0, so A = 2^20 and B = 2^19.
  CHECK(k.shift == 21);
  CHECK(k.multiplier_a == 1 << 20);
  CHECK(k.multiplier_b == 1 << 19);
  CHECK(k.zero_point_a == 3);
  CHECK(k.zero_point_b == 7);
  CHECK(k.zero_point == 9);
  CHECK(k.qmin == 9);
  CHECK(k.qmax == 200);
  const add_params tiny = int8::make_add_params(1e-9f, 0, 1e-9f, 0, 1.0f, 0);
  CHECK(tiny.shift == 31);
  CHECK_THROWS_AS((void)int8::make_add_params(0.0f, 0, 1.0f, 0, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_add_params(1.0f, 0, -1.0f, 0, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_add_params(1.0f, 0, 1.0f, 0, INFINITY, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_add_params(NAN, 0, 1.0f, 0, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_add_params(1.0f, 256, 1.0f, 0, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_add_params(1.0f, 0, 1.0f, -1, 1.0f, 0), value_error);
  CHECK_THROWS_AS((void)int8::make_add_params(1.0f, 0, 1.0f, 0, 1.0f, 300), value_error);
  CHECK_THROWS_AS((void)int8::make_add_params(1.0f, 0, 1.0f, 0, 1.0f, 0, 10, 5), value_error);
  CHECK_THROWS_AS((void)int8::make_add_params(1024.0f, 0, 1.0f, 0, 1.0f, 0), value_error);
  CHECK_NOTHROW((void)int8::make_add_params(1023.0f, 0, 1.0f, 0, 1.0f, 0));
}

TEST_CASE("add int8: within one step of float64, exact on at least 99 percent, misses only near ties") {
  int8_test::generator gen(31);
  long long cases = 0, exact = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const add_case c = random_case(gen);
    const add_params p = c.params();
    const double e = 255.0 / std::ldexp(1.0, p.shift);  // the documented error bound
    for (int i = 0; i < 100; ++i) {
      const int a = gen.uniform(0, 255), b = gen.uniform(0, 255);
      const double v = c.real(a, b);
      const double want = std::clamp(c.zp_out + std::round(v), static_cast<double>(c.qmin), 255.0);
      const int got = add_one(a, b, p);
      REQUIRE(std::abs(got - want) <= 1.0);
      ++cases;
      if (got == want) {
        ++exact;
      } else {
        INFO("v = ", v, ", bound ", e);
        CHECK(std::abs(std::abs(v - std::trunc(v)) - 0.5) <= e);
      }
    }
  }
  MESSAGE("add: ", exact, " of ", cases, " equal the float64 reference");
  CHECK(exact >= cases * 99 / 100);
}

TEST_CASE("add int8: every arch equals the reference on odd sizes and extremes") {
  int8_test::generator gen(37);
  std::vector<std::size_t> sizes = int8_test::odd_sizes();
  sizes.push_back(1000);
  sizes.push_back(4099);
  for (std::size_t n : sizes) {
    for (int trial = 0; trial < 3; ++trial) {
      const add_params k = random_case(gen).params();
      compare_all_archs(gen.bytes(n, trial == 0 ? 1 : 8), gen.bytes(n, trial == 0 ? 1 : 8), k);
    }
  }
  // Largest |p|: ratios just below the limit, inputs at 0 and 255 against zero points 255 and 0.
  const add_params big = int8::make_add_params(1023.9f, 255, 1023.9f, 255, 1.0f, 128);
  compare_all_archs(std::vector<std::uint8_t>(67, 0), std::vector<std::uint8_t>(67, 0), big);
  const add_params big_up = int8::make_add_params(1023.9f, 0, 1023.9f, 0, 1.0f, 128);
  compare_all_archs(std::vector<std::uint8_t>(67, 255), std::vector<std::uint8_t>(67, 255), big_up);
  CHECK(add_one(0, 0, big) == 0);
  CHECK(add_one(255, 255, big_up) == 255);
}

TEST_CASE("add int8: every arch equals the reference on all 65536 input pairs, clamps included") {
  // a = i % 256, b = i / 256: every pair once, in blocks of 64 and more (the AVX-512 path
  // narrows 64 outputs at a time with saturating packs, then clamps the bytes).
  std::vector<std::uint8_t> a(65536), b(65536);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<std::uint8_t>(i % 256);
    b[i] = static_cast<std::uint8_t>(i / 256);
  }
  compare_all_archs(a, b, int8::make_add_params(0.031f, 117, 0.047f, 131, 0.053f, 9));
  compare_all_archs(a, b, int8::make_add_params(0.5f, 3, 0.25f, 250, 1.0f, 128));            // ties both ways
  compare_all_archs(a, b, int8::make_add_params(0.5f, 3, 0.25f, 250, 1.0f, 128, 128, 255));  // fused ReLU
  compare_all_archs(a, b, int8::make_add_params(0.02f, 128, 0.02f, 128, 0.04f, 0, 0, 150));   // ReLU6-like qmax
  compare_all_archs(a, b, int8::make_add_params(900.0f, 0, 0.001f, 255, 1.0f, 255, 7, 200));  // saturating sums
  int8_test::generator gen(41);
  for (int trial = 0; trial < 4; ++trial) {
    add_case c = random_case(gen);
    compare_all_archs(a, b, int8::make_add_params(c.s_a, c.zp_a, c.s_b, c.zp_b, c.s_out, c.zp_out, c.qmin,
                                                  gen.uniform(c.qmin, 255)));
  }
}
