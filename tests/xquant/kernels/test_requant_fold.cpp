#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "xquant/kernels/fixed_point.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_fold.hpp"
#include "xquant/kernels/requantize.hpp"
#include "xquant/kernels/simd.hpp"
#include "tested_archs.hpp"

using namespace xquant;
using namespace xquant::kernels;

namespace {

/// The specification: fixed_point_round(acc + bias) + zero point (before the clamp).
std::int64_t spec(std::int32_t acc, std::int32_t bias, const fixed_point_multiplier& m, std::int32_t zp) {
  return reference::fixed_point_round(acc + bias, m.multiplier, m.shift) + zp;
}

/// Accumulators to try against one channel: the bound's ends, zero, random values, and the
/// values whose acc + bias lies nearest a tie of the rounding (where a wrong rounding bias
/// would show), all inside |acc| <= bound.
std::vector<std::int32_t> probes(std::mt19937& rng, std::int64_t bound, std::int32_t bias,
                                 const fixed_point_multiplier& m) {
  std::vector<std::int32_t> out = {0, static_cast<std::int32_t>(bound), static_cast<std::int32_t>(-bound)};
  std::uniform_int_distribution<std::int64_t> any(-bound, bound);
  for (int i = 0; i < 200; ++i) out.push_back(static_cast<std::int32_t>(any(rng)));
  // acc' = acc + bias with acc' * scale nearest k + 1/2: acc' = (k + 1/2) / scale, rounded.
  const long double scale = std::ldexp(static_cast<long double>(m.multiplier), -m.shift);
  std::uniform_int_distribution<int> half(-300, 300);
  for (int i = 0; i < 100; ++i) {
    const long double tie = (half(rng) + 0.5L) / scale;
    for (long long d = -2; d <= 2; ++d) {
      const long long acc = std::llround(tie) + d - bias;
      if (acc >= -bound && acc <= bound) out.push_back(static_cast<std::int32_t>(acc));
    }
  }
  return out;
}

/// Draws a channel like a real layer's: scale log-uniform in [1e-6, 1], bias, bound, zero point.
struct channel {
  fixed_point_multiplier m;
  std::int32_t bias, zp;
  std::int64_t bound;
};
channel draw(std::mt19937& rng) {
  std::uniform_real_distribution<double> e(std::log2(1e-6), 0.0);
  std::uniform_int_distribution<std::int64_t> bound(0, std::int64_t{1} << std::uniform_int_distribution<int>(0, 30)(rng));
  std::uniform_int_distribution<std::int32_t> bias(-(1 << 24), 1 << 24), zp(-65535, 65535);
  return {quantize_multiplier(static_cast<float>(std::exp2(e(rng)))), bias(rng), zp(rng), bound(rng)};
}

}  // namespace

TEST_CASE("requant fold: the folded value equals the specification wherever it is accepted") {
  std::mt19937 rng(11);
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    const channel c = draw(rng);
    const auto f = fold_requant(c.m.multiplier, c.m.shift, c.bias, c.bound, c.zp);
    if (!f) {
      ++rejected;
      continue;
    }
    ++accepted;
    CHECK(f->shift >= 1);
    CHECK(f->shift <= max_folded_shift);
    for (std::int32_t acc : probes(rng, c.bound, c.bias, c.m)) {
      const std::int64_t got = folded_round(acc, *f), want = spec(acc, c.bias, c.m, c.zp);
      if (got != want) {
        FAIL_CHECK("acc ", acc, " bias ", c.bias, " multiplier ", c.m.multiplier, " shift ", c.m.shift, " zp ", c.zp,
                   ": folded ", got, ", specification ", want);
        break;
      }
    }
  }
  // Both outcomes occur in this draw (bounds up to 2^30 with scales down to 1e-6).
  CHECK(accepted > 1000);
  CHECK(rejected > 100);
}

TEST_CASE("requant fold: exhaustive over every accumulator of small channels, ties included") {
  // Scale 3 * 2^-t (folded shift t) and the largest bound the tie rule allows, |acc + bias|
  // <= 2^(t-1) - 1: every acc in [-bound, bound], which includes every half-way value of
  // acc * scale short of the first tie at 2^(t-1).
  for (int t = 2; t <= 12; ++t) {
    const fixed_point_multiplier m = quantize_multiplier(std::ldexp(3.0f, -t));
    for (std::int32_t bias : {0, 5, -7}) {
      const std::int64_t bound = (std::int64_t{1} << (t - 1)) - 1 - std::abs(bias);
      if (bound < 0) continue;
      for (std::int32_t zp : {0, 128, -3}) {
        const auto f = fold_requant(m.multiplier, m.shift, bias, bound, zp);
        REQUIRE(f.has_value());
        CHECK(f->shift == t);
        CHECK_FALSE(fold_requant(m.multiplier, m.shift, bias, bound + 1, zp).has_value());
        for (std::int64_t acc = -bound; acc <= bound; ++acc) {
          const auto a = static_cast<std::int32_t>(acc);
          REQUIRE(folded_round(a, *f) == spec(a, bias, m, zp));
        }
      }
    }
  }
}

TEST_CASE("requant fold: channels where folding would be wrong or overflow are refused") {
  // Scale 1/2: acc = +-1 are ties (round half away gives +-1; floor(x + 1/2) gives 1 and 0).
  const fixed_point_multiplier half = quantize_multiplier(0.5f);
  CHECK_FALSE(fold_requant(half.multiplier, half.shift, 0, 1, 0).has_value());
  CHECK(fold_requant(half.multiplier, half.shift, 0, 0, 0).has_value());  // only acc = 0: no tie
  // Scale 3/8: t = 3, so |acc'| must stay below 4.
  const fixed_point_multiplier m = quantize_multiplier(0.375f);
  CHECK(fold_requant(m.multiplier, m.shift, 0, 3, 0).has_value());
  CHECK_FALSE(fold_requant(m.multiplier, m.shift, 0, 4, 0).has_value());
  CHECK_FALSE(fold_requant(m.multiplier, m.shift, 1, 3, 0).has_value());  // the bias counts too
  // Sums that may wrap int32, tiny scales (t past max_folded_shift), bad arguments.
  const fixed_point_multiplier small = quantize_multiplier(1e-3f);
  CHECK(fold_requant(small.multiplier, small.shift, 0, (std::int64_t{1} << 30), 0).has_value());
  CHECK_FALSE(fold_requant(small.multiplier, small.shift, 0, (std::int64_t{1} << 31), 0).has_value());
  CHECK_FALSE(fold_requant(small.multiplier, small.shift, 1, (std::int64_t{1} << 31) - 1, 0).has_value());
  const fixed_point_multiplier tiny = quantize_multiplier(std::ldexp(1.3f, -40));  // t = 62
  CHECK_FALSE(fold_requant(tiny.multiplier, tiny.shift, 0, 1000, 0).has_value());
  CHECK_FALSE(fold_requant(0, 31, 0, 10, 0).has_value());
  CHECK_FALSE(fold_requant(small.multiplier, 0, 0, 10, 0).has_value());
  CHECK_FALSE(fold_requant(small.multiplier, small.shift, 0, -1, 0).has_value());
  CHECK_FALSE(fold_requant(small.multiplier, small.shift, 0, 10, 70000).has_value());
  // Scales of 2 and more: the reduced shift t is below 1.
  const fixed_point_multiplier big = quantize_multiplier(1.5f * (1 << 20));
  CHECK_FALSE(fold_requant(big.multiplier, big.shift, 0, 0, 0).has_value());
}

TEST_CASE("requant fold: uint8_dot_bound is 255 * sum |w| and is reached") {
  const std::vector<std::int8_t> w = {-128, 127, 0, -1, 5};
  CHECK(uint8_dot_bound(w.data(), w.size()) == 255 * (128 + 127 + 0 + 1 + 5));
  CHECK(uint8_dot_bound(w.data(), 3, 2) == 255 * (128 + 0 + 5));  // strided: w[0], w[2], w[4]
  CHECK(uint8_dot_bound(w.data(), 0) == 0);
}

TEST_CASE("requant fold: folded_lanes equals folded_round on every runnable arch") {
  std::mt19937 rng(5);
  int archs = 0;
  simd::for_each_arch(xquant_test::tested_archs{}, [&](auto arch) {
    using A = decltype(arch);
    if (!simd::available<A>()) return;
    ++archs;
    using i32 = simd::batch<std::int32_t, A>;
    constexpr std::size_t width = i32::size;
    for (int trial = 0; trial < 400; ++trial) {
      std::vector<folded_requant> f(width);
      std::vector<std::int64_t> bounds(width);
      kernels::detail::folded_channels<2 * width> lanes_of;  // the batch at entry offset (2, 4, ...)
      const std::size_t offset = 2 * (trial % (width / 2 + 1));
      for (std::size_t l = 0; l < width; ++l) {
        std::optional<folded_requant> one;
        while (!one) {
          const channel c = draw(rng);
          bounds[l] = c.bound;
          one = fold_requant(c.m.multiplier, c.m.shift, c.bias, c.bound, c.zp);
        }
        f[l] = *one;
        lanes_of.set(offset + l, f[l]);
      }
      alignas(64) std::int32_t acc[width], got[width];
      for (std::size_t l = 0; l < width; ++l)
        acc[l] = static_cast<std::int32_t>(std::uniform_int_distribution<std::int64_t>(-bounds[l], bounds[l])(rng));
      if (trial % 4 == 0) acc[trial / 4 % width] = static_cast<std::int32_t>(-bounds[trial / 4 % width]);
      kernels::detail::folded_lanes<A>(lanes_of, offset)(i32::load_aligned(acc)).store_aligned(got);
      for (std::size_t l = 0; l < width; ++l) {
        if (got[l] != folded_round(acc[l], f[l])) {
          FAIL_CHECK(A::name(), " lane ", l, " acc ", acc[l], ": ", got[l], " vs ", folded_round(acc[l], f[l]));
          return;
        }
      }
    }
  });
  CHECK(archs >= 1);
}

namespace {

/// The specification clamped to [lo, hi].
std::int64_t clamped_spec(std::int32_t acc, const channel& c, std::int32_t lo, std::int32_t hi) {
  return std::clamp<std::int64_t>(spec(acc, c.bias, c.m, c.zp), lo, hi);
}

/// A zero point that puts the channel's outputs around the uint8 range (so that both the
/// clamp and the values inside it are exercised): -round(scale * bias) plus something in
/// [-64, 320], where possible inside fold_requant's |zero point| <= 65535.
std::int32_t uint8_zero_point(std::mt19937& rng, const channel& c) {
  const double scale = std::ldexp(static_cast<double>(c.m.multiplier), -c.m.shift);
  const double centre = -scale * c.bias + std::uniform_int_distribution<int>(-64, 320)(rng);
  return static_cast<std::int32_t>(std::clamp(std::nearbyint(centre), -65535.0, 65535.0));
}

}  // namespace

TEST_CASE("requant fold: the float form equals the specification wherever it is accepted") {
  std::mt19937 rng(17);
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    channel c = draw(rng);
    c.zp = uint8_zero_point(rng, c);
    const auto f = fold_float_requant(c.m.multiplier, c.m.shift, c.bias, c.bound, c.zp);
    if (!f) {
      ++rejected;
      continue;
    }
    ++accepted;
    CHECK(fold_requant(c.m.multiplier, c.m.shift, c.bias, c.bound, c.zp).has_value());  // only folding channels
    const std::int32_t lo = i % 3 == 0 ? 0 : std::uniform_int_distribution<std::int32_t>(0, 100)(rng);
    const std::int32_t hi = i % 3 == 0 ? 255 : std::uniform_int_distribution<std::int32_t>(lo, 255)(rng);
    for (std::int32_t acc : probes(rng, c.bound, c.bias, c.m)) {
      const std::int64_t got = float_folded_clamped(acc, *f, lo, hi), want = clamped_spec(acc, c, lo, hi);
      if (got != want) {
        FAIL_CHECK("acc ", acc, " bias ", c.bias, " multiplier ", c.m.multiplier, " shift ", c.m.shift, " zp ", c.zp,
                   " clamp [", lo, ", ", hi, "]: float form ", got, ", specification ", want);
        break;
      }
    }
  }
  CHECK(accepted > 500);
  CHECK(rejected > 100);
}

TEST_CASE("requant fold: the float form over every accumulator of small channels and up to the 2^24 bound") {
  // Every acc of the tie rule's largest bound (as in the exhaustive fold test), zero points
  // that put the outputs across the whole uint8 range and past both ends of it.
  for (int t = 2; t <= 12; ++t) {
    const fixed_point_multiplier m = quantize_multiplier(std::ldexp(3.0f, -t));
    for (std::int32_t bias : {0, 5, -7}) {
      const std::int64_t bound = (std::int64_t{1} << (t - 1)) - 1 - std::abs(bias);
      if (bound < 0) continue;
      for (std::int32_t zp : {0, 128, -3, 300}) {
        const channel c{m, bias, zp, bound};
        const auto f = fold_float_requant(m.multiplier, m.shift, bias, bound, zp);
        REQUIRE(f.has_value());
        for (std::int64_t acc = -bound; acc <= bound; ++acc) {
          const auto a = static_cast<std::int32_t>(acc);
          REQUIRE(float_folded_clamped(a, *f, 0, 255) == clamped_spec(a, c, 0, 255));
          REQUIRE(float_folded_clamped(a, *f, 3, 200) == clamped_spec(a, c, 3, 200));
        }
      }
    }
  }
  // |acc + bias| up to 2^24, where the float conversion is last exact: accepted, and right
  // for every acc; one more and the channel is refused. Scale 1023 * 2^-26 (t = 26, so the
  // tie rule allows 2^24) puts acc * scale in [-256, 256]: with zero point 100, both ends
  // of the clamp and everything between.
  const fixed_point_multiplier m = quantize_multiplier(std::ldexp(1023.0f, -26));
  const std::int64_t edge = std::int64_t{1} << 24;
  const channel c{m, 0, 100, edge};
  const auto f = fold_float_requant(m.multiplier, m.shift, 0, edge, 100);
  REQUIRE(f.has_value());
  CHECK_FALSE(fold_float_requant(m.multiplier, m.shift, 0, edge + 1, 100).has_value());
  CHECK_FALSE(fold_float_requant(m.multiplier, m.shift, 1, edge, 100).has_value());  // the bias counts too
  for (std::int64_t acc = -edge; acc <= edge; ++acc) {
    const auto a = static_cast<std::int32_t>(acc);
    if (float_folded_clamped(a, *f, 0, 255) != clamped_spec(a, c, 0, 255)) {
      FAIL("acc ", a, ": float form ", float_folded_clamped(a, *f, 0, 255), ", specification ",
           clamped_spec(a, c, 0, 255));
    }
  }
}

TEST_CASE("requant fold: the float form refuses what it cannot compute exactly") {
  // Channels the integer fold refuses (ties) are refused too.
  const fixed_point_multiplier half = quantize_multiplier(0.5f);
  CHECK_FALSE(fold_float_requant(half.multiplier, half.shift, 0, 1, 0).has_value());
  // A multiplier whose odd part needs more than the 24 bits of a float (not one that
  // quantize_multiplier makes from a float scale, but a valid fixed-point argument).
  const std::int32_t wide = (std::int32_t{1} << 30) + 1;
  CHECK(fold_requant(wide, 40, 0, 1000, 0).has_value());
  CHECK_FALSE(fold_float_requant(wide, 40, 0, 1000, 0).has_value());
  // Accumulator bounds past 2^24 that the integer fold still takes.
  const fixed_point_multiplier small = quantize_multiplier(1e-4f);
  CHECK(fold_requant(small.multiplier, small.shift, 0, std::int64_t{1} << 25, 0).has_value());
  CHECK_FALSE(fold_float_requant(small.multiplier, small.shift, 0, std::int64_t{1} << 25, 0).has_value());
  CHECK(float_rounding_is_nearest());
}

TEST_CASE("requant fold: float_folded_lanes and float_folded_store equal float_folded_clamped") {
  std::mt19937 rng(23);
  int archs = 0;
  simd::for_each_arch(xquant_test::tested_archs{}, [&](auto arch) {
    using A = decltype(arch);
    if constexpr (simd::has_fused_multiply_add<A>) {
      if (!simd::available<A>()) return;
      ++archs;
      using i32 = simd::batch<std::int32_t, A>;
      constexpr std::size_t width = i32::size;
      for (int trial = 0; trial < 400; ++trial) {
        requant_channel_params params;
        std::vector<std::int32_t> bias(2 * width);
        std::vector<std::int64_t> bounds(2 * width);
        std::vector<float_folded_requant> f(2 * width);
        const std::int32_t zp = std::uniform_int_distribution<std::int32_t>(-64, 320)(rng);
        for (std::size_t l = 0; l < 2 * width; ++l) {
          std::optional<float_folded_requant> one;
          while (!one) {
            channel c = draw(rng);
            c.bias /= 64;  // keeping the zero point common to all channels inside uint8's reach
            bias[l] = c.bias, bounds[l] = c.bound % (std::int64_t{1} << 24);
            params.fixed.multiplier.push_back(c.m.multiplier);
            params.fixed.shift.push_back(c.m.shift);
            one = fold_float_requant(c.m.multiplier, c.m.shift, c.bias, bounds[l], zp);
            if (!one) params.fixed.multiplier.pop_back(), params.fixed.shift.pop_back();
          }
          f[l] = *one;
        }
        params.zero_point = zp;
        params.scale.assign(2 * width, 1.0f);
        kernels::detail::float_folded_channels<2 * width> lanes_of;
        REQUIRE(lanes_of.fold(params.args(), bias.data(), bounds.data(), 0, 2 * width));
        const std::size_t offset = trial % 2 * width;
        const std::int32_t lo = trial % 3 == 0 ? 0 : 10, hi = trial % 3 == 0 ? 255 : 200;
        alignas(64) std::int32_t acc[width];
        for (std::size_t l = 0; l < width; ++l) {
          const std::int64_t b = bounds[offset + l];
          acc[l] = static_cast<std::int32_t>(std::uniform_int_distribution<std::int64_t>(-b, b)(rng));
        }
        const std::size_t valid = trial % 5 == 0 ? 1 + trial % width : width;
        std::uint8_t got[64];
        std::fill(std::begin(got), std::end(got), std::uint8_t{0xAB});
        const kernels::detail::float_folded_store<A> store(lo, hi);
        store(got, kernels::detail::float_folded_lanes<A>(lanes_of, offset)(i32::load_aligned(acc)), valid);
        for (std::size_t l = 0; l < width; ++l) {
          const std::int32_t want = l < valid ? float_folded_clamped(acc[l], f[offset + l], lo, hi) : 0xAB;
          if (got[l] != want) {
            FAIL_CHECK(A::name(), " lane ", l, " acc ", acc[l], ": ", int{got[l]}, " vs ", want);
            return;
          }
        }
      }
    }
  });
  CHECK(archs >= (simd::has_fused_multiply_add<simd::default_arch> ? 1 : 0));
}

TEST_CASE("simd: mul_even_i32, sra_lanes and interleave_low_halves on every runnable arch") {
  std::mt19937_64 rng(3);
  simd::for_each_arch(xquant_test::tested_archs{}, [&](auto arch) {
    using A = decltype(arch);
    if (!simd::available<A>()) return;
    using u64 = simd::batch<std::uint64_t, A>;
    constexpr std::size_t n = u64::size;
    for (int trial = 0; trial < 200; ++trial) {
      alignas(64) std::uint64_t a[n], b[n], s[n], got[n];
      for (std::size_t l = 0; l < n; ++l) {
        a[l] = rng(), b[l] = rng(), s[l] = rng() % 64;
        if (trial % 3 == 0) a[l] |= 0x80000000u;  // negative low halves
      }
      simd::mul_even_i32(u64::load_aligned(a), u64::load_aligned(b)).store_aligned(got);
      for (std::size_t l = 0; l < n; ++l) {
        const auto want = static_cast<std::uint64_t>(std::int64_t{static_cast<std::int32_t>(a[l])} *
                                                     static_cast<std::int32_t>(b[l]));
        REQUIRE_MESSAGE(got[l] == want, A::name(), " mul_even_i32 lane ", l);
      }
      simd::sra_lanes(u64::load_aligned(a), u64::load_aligned(s)).store_aligned(got);
      for (std::size_t l = 0; l < n; ++l)
        REQUIRE_MESSAGE(got[l] == static_cast<std::uint64_t>(static_cast<std::int64_t>(a[l]) >> s[l]), A::name(),
                        " sra_lanes lane ", l);
      alignas(64) std::int32_t mixed[2 * n];
      simd::interleave_low_halves(u64::load_aligned(a), u64::load_aligned(b)).store_aligned(mixed);
      for (std::size_t l = 0; l < n; ++l) {
        REQUIRE(mixed[2 * l] == static_cast<std::int32_t>(a[l]));
        REQUIRE(mixed[2 * l + 1] == static_cast<std::int32_t>(b[l]));
      }
    }
  });
}
