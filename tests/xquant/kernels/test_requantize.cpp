#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "xquant/kernels/fixed_point.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requantize.hpp"
#include "xquant/kernels/simd.hpp"
#include "tested_archs.hpp"

using namespace xquant;
using namespace xquant::kernels;

namespace {

constexpr std::int32_t int32_min = std::numeric_limits<std::int32_t>::min();
constexpr std::int32_t int32_max = std::numeric_limits<std::int32_t>::max();

// ---- oracles ----------------------------------------------------------------------------

// acc * scale needs at most 31 + 24 = 55 significant bits. x86's long double has 64, so this
// product is exact and std::llround rounds it once, half away from zero: the exact oracle.
constexpr bool have_exact_oracle = std::numeric_limits<long double>::digits >= 55;

long long exact_round(std::int32_t acc, float scale) {
  return std::llround(static_cast<long double>(acc) * static_cast<long double>(scale));
}

// What one would write in plain C++: the double product (53 bits, rounded), then std::round.
double double_round(std::int32_t acc, float scale) {
  return std::round(static_cast<double>(acc) * static_cast<double>(scale));
}

bool is_half_integer(double d) { return std::abs(d - std::trunc(d)) == 0.5; }

long long clamp_output(long long q, const requant_args& a) {
  return std::clamp<long long>(q + a.zero_point, a.qmin, a.qmax);
}

// ---- random cases -----------------------------------------------------------------------

/// The modular inverse of an odd number, mod 2^64 (Newton: each step doubles the bits).
std::uint64_t inverse_mod_2_64(std::uint64_t odd) {
  std::uint64_t inv = odd;
  for (int i = 0; i < 6; ++i) inv *= 2 - odd * inv;
  return inv;
}

struct generator {
  std::mt19937 rng;

  explicit generator(unsigned seed) : rng(seed) {}

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

  float log_uniform(float lo, float hi) {
    return std::exp2(std::uniform_real_distribution<float>(std::log2(lo), std::log2(hi))(rng));
  }

  /// Mostly log-uniform in [1e-6, 1]; some scales with few significant bits (many exact
  /// ties), some >= 1/2 (shift < 32: the clamped SIMD branch) and some tiny (shift > 62).
  float scale() {
    switch (uniform(0, 9)) {
      case 0:
        return std::ldexp(1.0f + static_cast<float>(uniform(0, 7)) / 8.0f, -uniform(0, 24));
      case 1:
        return log_uniform(0.5f, 1e6f);
      case 2:
        return log_uniform(1e-38f, 1e-6f);
      default:
        return log_uniform(1e-6f, 1.0f);
    }
  }

  /// An accumulator that lands exactly on, or one step beside, a rounding tie of
  /// acc * scale, with a product of up to 55 bits; falls back to a uniform int32.
  std::int32_t near_tie(float scale) {
    const fixed_point_multiplier m = quantize_multiplier(scale);
    const int zeros = std::countr_zero(static_cast<std::uint32_t>(m.multiplier));
    const std::uint64_t odd = static_cast<std::uint32_t>(m.multiplier) >> zeros;
    const int t = m.shift - zeros;  // acc * scale = acc * odd / 2^t
    if (t >= 2 && t <= 62) {
      const std::uint64_t mask = (std::uint64_t{1} << t) - 1;
      const std::uint64_t target = (std::uint64_t{1} << (t - 1)) + static_cast<std::uint64_t>(uniform(-2, 2));
      const std::uint64_t acc = (target * inverse_mod_2_64(odd)) & mask;
      if (acc <= static_cast<std::uint64_t>(int32_max)) {
        return uniform(0, 1) ? static_cast<std::int32_t>(acc) : -static_cast<std::int32_t>(acc);
      }
    }
    return static_cast<std::int32_t>(rng());
  }

  std::int32_t accumulator(float scale) {
    switch (uniform(0, 9)) {
      case 0: {
        constexpr std::int32_t special[] = {int32_min,  int32_max,     int32_min + 1, 0, 1, -1, 1 << 24,
                                            -(1 << 24), (1 << 24) + 1, -(1 << 24) - 1};
        return special[uniform(0, 9)];
      }
      case 1:
      case 2:
        return static_cast<std::int32_t>(rng());
      case 3:
      case 4: {  // a GEMM accumulator: roughly normal, of any magnitude up to 2^24
        const double sigma = std::exp2(uniform(0, 24));
        return static_cast<std::int32_t>(std::round(std::normal_distribution<double>(0.0, sigma)(rng)));
      }
      case 5: {  // next to a tie of the output grid, (k + 1/2) / scale
        const double k = uniform(-70000, 70000) + 0.5;
        const double acc = std::round(k / static_cast<double>(scale)) + uniform(-1, 1);
        return acc > int32_min && acc < int32_max ? static_cast<std::int32_t>(acc) : 0;
      }
      case 6:
      case 7:
        return near_tie(scale);
      default:
        return uniform(-300, 300);
    }
  }

  /// Zero point and clamp bounds for Out: usually the full range, sometimes a random
  /// sub-range (a fused activation), not necessarily containing the zero point.
  template <class Out>
  requant_args args(float scale) {
    constexpr int lo = std::numeric_limits<Out>::lowest();
    constexpr int hi = std::numeric_limits<Out>::max();
    const int zp = uniform(lo, hi);
    if (uniform(0, 3) == 0) {
      const int a = uniform(lo, hi);
      const int b = uniform(lo, hi);
      return make_requant_args<Out>(scale, zp, std::min(a, b), std::max(a, b));
    }
    return make_requant_args<Out>(scale, zp);
  }
};

// ---- SIMD vs reference --------------------------------------------------------------------

/// "" when equal, else a description of the first difference.
template <class Out>
std::string first_difference(const std::vector<std::int32_t>& acc, const std::vector<Out>& want,
                             const std::vector<Out>& got) {
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      std::ostringstream s;
      s << "n = " << want.size() << ", i = " << i << ": acc = " << acc[i] << ", reference " << int{want[i]}
        << ", simd " << int{got[i]};
      return s.str();
    }
  }
  return "";
}

template <class Arch, class Out>
void compare_per_tensor(generator& g, std::size_t n) {
  const float scale = g.scale();
  const requant_args args = g.args<Out>(scale);
  std::vector<std::int32_t> acc(n);
  for (auto& a : acc) a = g.accumulator(scale);
  std::vector<Out> want(n), got(n);
  INFO("arch ", Arch::name(), ", scale ", scale, ", zero point ", args.zero_point, ", clamp [", args.qmin,
       ", ", args.qmax, "]");

  reference::requantize_fixed(acc.data(), n, args, want.data());
  requantize_fixed<Arch>(acc.data(), n, args, got.data());
  CHECK_MESSAGE(want == got, "fixed: ", first_difference(acc, want, got));

  reference::requantize_float(acc.data(), n, args, want.data());
  requantize_float<Arch>(acc.data(), n, args, got.data());
  CHECK_MESSAGE(want == got, "float: ", first_difference(acc, want, got));
}

template <class Arch, class Out>
void compare_per_channel(generator& g, std::size_t rows, std::size_t channels) {
  std::vector<float> scales(channels);
  for (auto& s : scales) s = g.scale();
  const requant_args out = g.args<Out>(1.0f);
  const requant_channel_params params =
      make_requant_channel_params<Out>(scales, out.zero_point, out.qmin, out.qmax);
  std::vector<std::int32_t> acc(rows * channels);
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = g.accumulator(scales[i % channels]);
  std::vector<Out> want(acc.size()), got(acc.size());
  INFO("arch ", Arch::name(), ", rows ", rows, ", channels ", channels);

  reference::requantize_fixed_per_channel(acc.data(), rows, channels, params.args(), want.data());
  requantize_fixed_per_channel<Arch>(acc.data(), rows, channels, params.args(), got.data());
  CHECK_MESSAGE(want == got, "fixed: ", first_difference(acc, want, got));

  reference::requantize_float_per_channel(acc.data(), rows, channels, params.args(), want.data());
  requantize_float_per_channel<Arch>(acc.data(), rows, channels, params.args(), got.data());
  CHECK_MESSAGE(want == got, "float: ", first_difference(acc, want, got));
}

template <class Out>
void compare_all_archs(unsigned seed) {
  const int archs = xquant_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    generator g(seed);
    for (std::size_t n = 0; n <= 70; ++n) compare_per_tensor<Arch, Out>(g, n);
    compare_per_tensor<Arch, Out>(g, 4099);
    for (std::size_t channels = 0; channels <= 70; ++channels) {
      compare_per_channel<Arch, Out>(g, 1 + channels % 3, channels);
    }
    compare_per_channel<Arch, Out>(g, 37, 131);
  });
  CHECK(archs >= 1);  // at least the default arch runs here
}

/// Runs both paths, reference and every arch (70 copies of acc: full batches and a tail).
template <class Out>
void check_case(std::int32_t acc, float scale, int zp, int qmin, int qmax, int want_fixed, int want_float) {
  INFO("acc ", acc, ", scale ", scale, ", zero point ", zp);
  const requant_args a = make_requant_args<Out>(scale, zp, qmin, qmax);
  CHECK(int{reference::requantize_fixed<Out>(acc, a.multiplier, a.shift, zp, qmin, qmax)} == want_fixed);
  CHECK(int{reference::requantize_float<Out>(acc, scale, zp, qmin, qmax)} == want_float);
  const std::vector<std::int32_t> accs(70, acc);
  xquant_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    INFO("arch ", Arch::name());
    std::vector<Out> out(accs.size());
    requantize_fixed<Arch>(accs.data(), accs.size(), a, out.data());
    CHECK(out == std::vector<Out>(accs.size(), static_cast<Out>(want_fixed)));
    requantize_float<Arch>(accs.data(), accs.size(), a, out.data());
    CHECK(out == std::vector<Out>(accs.size(), static_cast<Out>(want_float)));
  });
}

template <class Out>
void check_case(std::int32_t acc, float scale, int zp, int want_fixed, int want_float) {
  check_case<Out>(acc, scale, zp, std::numeric_limits<Out>::lowest(), std::numeric_limits<Out>::max(),
                  want_fixed, want_float);
}

}  // namespace

TEST_CASE("requantization: hand-made cases, every path and arch") {
  using i8 = std::int8_t;
  using u8 = std::uint8_t;
  using i16 = std::int16_t;
  SUBCASE("ties: fixed point rounds half away from zero, float half to even") {
    check_case<i8>(5, 0.5f, 0, 3, 2);
    check_case<i8>(-5, 0.5f, 0, -3, -2);
    check_case<i8>(7, 0.5f, 0, 4, 4);
    check_case<i8>(3, 0.5f, 0, 2, 2);
    check_case<i8>(1, 0.5f, 0, 1, 0);
    check_case<i8>(-1, 0.5f, 0, -1, 0);
    check_case<i8>(3, 0.25f, 0, 1, 1);   // 0.75
    check_case<i8>(6, 0.25f, 0, 2, 2);   // 1.5
    check_case<i8>(10, 0.25f, 0, 3, 2);  // 2.5
  }
  SUBCASE("zero point and clamp") {
    check_case<i8>(1000, 1.0f, 0, 127, 127);
    check_case<i8>(-1000, 1.0f, 0, -128, -128);
    check_case<u8>(-5, 0.5f, 128, 125, 126);
    check_case<u8>(300, 1.0f, 128, 255, 255);
    check_case<u8>(-300, 1.0f, 128, 0, 0);
    check_case<i8>(-50, 0.5f, -10, -10, 127, -10, -10);  // fused ReLU: qmin = zero point
    check_case<i8>(50, 0.5f, -10, -10, 0, 0, 0);
  }
  SUBCASE("extreme accumulators") {
    check_case<i16>(int32_min, std::ldexp(1.0f, -31), 0, -1, -1);
    check_case<i16>(int32_max, std::ldexp(1.0f, -31), 0, 1, 1);
    check_case<i16>(int32_min, std::ldexp(1.0f, -32), 0, -1, 0);  // -0.5 exactly
    check_case<i16>(int32_max, std::ldexp(1.0f, -32), 0, 0, 0);   // 0.4999999998
    // (2^31 - 1) * 3 * 2^-32 = 1.5 - 7e-10: exact rounding gives 1. float(2^31 - 1) = 2^31,
    // so the float path sees exactly 1.5 and rounds to even: the documented off-by-one.
    check_case<i16>(int32_max, std::ldexp(3.0f, -32), 0, 1, 2);
    check_case<i16>(int32_min, 1.0f, 0, -32768, -32768);
    check_case<i16>(int32_max, 1.0f, 5, 32767, 32767);
  }
  SUBCASE("extreme scales") {
    check_case<i8>(int32_min, 1e-30f, -7, -7, -7);  // shift 130: everything rounds to 0
    check_case<i8>(int32_max, std::numeric_limits<float>::denorm_min(), 3, 3, 3);
    check_case<i16>(1, std::ldexp(1.0f, 29), 0, 32767, 32767);  // shift 1
    check_case<i16>(-1, std::ldexp(1.0f, 29), 0, -32768, -32768);
    check_case<i16>(0, std::ldexp(1.0f, 29), -4, -4, -4);
    check_case<i16>(3, 1.5f, 0, 5, 4);  // 4.5, shift 30
    check_case<i16>(-21845, 1.5f, 0, -32768, -32768);
    check_case<i16>(-21845, 1.5f, 100, -32668, -32668);  // -32767.5 + 100
  }
}

TEST_CASE("fixed-point reference: exactly round(acc * scale), half away from zero") {
  if constexpr (!have_exact_oracle) {
    MESSAGE("long double cannot hold a 55-bit product here; exactness oracle skipped");
    return;
  }
  generator g(7);
  long long ties = 0;
  long long double_differs = 0;
  for (int i = 0; i < 100000; ++i) {
    const float scale = i % 2 ? g.log_uniform(1e-6f, 1.0f) : g.scale();
    const std::int32_t acc = g.accumulator(scale);
    const fixed_point_multiplier m = quantize_multiplier(scale);
    const std::int64_t q = reference::fixed_point_round(acc, m.multiplier, m.shift);
    INFO("acc ", acc, ", scale ", scale);
    REQUIRE(q == exact_round(acc, scale));
    if (acc != int32_min) REQUIRE(reference::fixed_point_round(-acc, m.multiplier, m.shift) == -q);
    const long double exact = static_cast<long double>(acc) * static_cast<long double>(scale);
    ties += std::abs(exact - std::trunc(exact)) == 0.5L;
    // Plain double: within 1 always, and different only where the 53-bit product landed
    // exactly on a .5 that the 55-bit product does not reach.
    const double d = double_round(acc, scale);
    REQUIRE(std::abs(static_cast<double>(q) - d) <= 1.0);
    if (static_cast<double>(q) != d) {
      ++double_differs;
      const double product = static_cast<double>(acc) * static_cast<double>(scale);
      CHECK(is_half_integer(product));
      CHECK(static_cast<long double>(product) != exact);
    }
  }
  MESSAGE("exact ties: ", ties, ", where std::round(double product) differs: ", double_differs);
  CHECK(ties > 500);           // the generator does reach ties...
  CHECK(double_differs > 20);  // ...and the 55-bit near-ties where double rounding fails
}

TEST_CASE("fixed-point reference: the documented difference from std::round in double") {
  // scale = 0x1.c0b23ap-17 (~1.337e-5), acc * scale = 24546.5 - 2^-39 exactly: the
  // exact result is 24546, but the double product rounds to 24546.5 and std::round gives
  // 24547. This is inside the int16 range, so an int16 output shows it.
  const float scale = 0x1.c0b23ap-17f;
  const std::int32_t acc = 1835638166;
  const fixed_point_multiplier m = quantize_multiplier(scale);
  CHECK(reference::fixed_point_round(acc, m.multiplier, m.shift) == 24546);
  CHECK(double_round(acc, scale) == 24547.0);
  CHECK(reference::requantize_fixed<std::int16_t>(acc, m.multiplier, m.shift, 0, -32768, 32767) == 24546);
  CHECK(reference::fixed_point_round(-acc, m.multiplier, m.shift) == -24546);
  if constexpr (have_exact_oracle) CHECK(exact_round(acc, scale) == 24546);

  // scale = 1 - 2^-24, acc = 2^30 + 2^23 + 1: acc * scale = 1082130368.5 - 2^-24.
  const float below_one = std::nextafter(1.0f, 0.0f);
  const std::int32_t big = (1 << 30) + (1 << 23) + 1;
  const fixed_point_multiplier b = quantize_multiplier(below_one);
  CHECK(reference::fixed_point_round(big, b.multiplier, b.shift) == 1082130368);
  CHECK(double_round(big, below_one) == 1082130369.0);
}

// gemmlowp's SaturatingRoundingDoublingHighMul and RoundingDivideByPOT, as TFLite uses them
// (without TFLITE_SINGLE_ROUNDING): the two-step rounding the reference header argues against.
std::int32_t doubling_high_mul(std::int32_t a, std::int32_t b) {
  const std::int64_t ab = std::int64_t{a} * b;
  const std::int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return static_cast<std::int32_t>((ab + nudge) / (std::int64_t{1} << 31));
}
std::int32_t rounding_divide_by_pot(std::int32_t x, int exponent) {
  const std::int64_t mask = (std::int64_t{1} << exponent) - 1;
  const std::int64_t remainder = x & mask;
  const std::int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

TEST_CASE("two-step (gemmlowp) rounding is one off near ties, the single rounding shift is not") {
  if constexpr (!have_exact_oracle) return;
  generator g(5);
  int two_step_differs = 0;
  for (int i = 0; i < 20000; ++i) {
    const float scale = g.log_uniform(1e-6f, 0.49f);  // shift in [32, 62]: exponent = shift - 31
    const std::int32_t acc = i % 2 ? g.near_tie(scale) : static_cast<std::int32_t>(g.rng());
    const fixed_point_multiplier m = quantize_multiplier(scale);
    const long long exact = exact_round(acc, scale);
    CHECK(reference::fixed_point_round(acc, m.multiplier, m.shift) == exact);
    const long long two_step = rounding_divide_by_pot(doubling_high_mul(acc, m.multiplier), m.shift - 31);
    CHECK(std::abs(two_step - exact) <= 1);
    two_step_differs += two_step != exact;
  }
  MESSAGE("two-step rounding differs from exact in ", two_step_differs, " of 20000 cases");
  CHECK(two_step_differs > 0);
}

TEST_CASE("float reference: within 1 of the exactly rounded result") {
  if constexpr (!have_exact_oracle) return;
  generator g(11);
  long long differs = 0;
  for (int i = 0; i < 100000; ++i) {
    const float scale = i % 2 ? g.log_uniform(1e-6f, 1.0f) : g.scale();
    const std::int32_t acc = g.accumulator(scale);
    const requant_args a = i % 3 ? g.args<std::int16_t>(scale) : g.args<std::int8_t>(scale);
    const long long want = clamp_output(exact_round(acc, scale), a);
    const long long got = reference::requantize_float<std::int16_t>(acc, scale, a.zero_point, a.qmin, a.qmax);
    INFO("acc ", acc, ", scale ", scale, ", zero point ", a.zero_point);
    REQUIRE(std::abs(got - want) <= 1);
    differs += got != want;
    // The fixed-point path is exact after clamping too.
    REQUIRE(reference::requantize_fixed<std::int16_t>(acc, a.multiplier, a.shift, a.zero_point, a.qmin,
                                                      a.qmax) == want);
  }
  MESSAGE("float path differs from exact rounding in ", differs, " of 100000 cases");
  CHECK(differs > 0);
}

TEST_CASE("requantization: SIMD == scalar reference, bit for bit, on every runnable arch") {
  SUBCASE("int8") { compare_all_archs<std::int8_t>(1); }
  SUBCASE("uint8") { compare_all_archs<std::uint8_t>(2); }
  SUBCASE("int16") { compare_all_archs<std::int16_t>(3); }
}

TEST_CASE("simd: the arch lists and run-time detection") {
  CHECK(simd::available<simd::default_arch>());
  CHECK(simd::compiled_archs::contains<simd::default_arch>());
  int count = 0;
  simd::for_each_arch(simd::compiled_archs{}, [&](auto) { ++count; });
  CHECK(count >= 1);
}
