#include <doctest/doctest.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "xquant/kernels/int8/gemm.hpp"
#include "xquant/kernels/reference/int8/gemm.hpp"
#include "int8_test_support.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/requant_fold.hpp"
#include "xquant/kernels/simd.hpp"
#include "../tested_archs.hpp"

using namespace xquant;
using namespace xquant::kernels;

namespace {

// Around 1..10 and both sides of the vector widths (4, 8, 16), the tile widths (8, 16, 64)
// and the k group (4).

using int8_test::sentinel;

enum class data_kind { random, extreme_low, extreme_high, extreme_mixed };

/// How the requantization is drawn.
struct requant_kind {
  bool per_channel = true;
  bool narrow_clamp = false;  ///< [zp, zp + 24], ReLU6-like
  bool large_scales = false;  ///< some scales >= 1/2 (shift < 32: the SIMD clamp branch)
};

/// One product with its inputs; A ends right after its last element (ASan sees any read
/// past it), C has sentinels in its row gaps and one byte after its end.
struct int8_product {
  std::size_t m, n, k, lda, ldc;
  std::vector<std::uint8_t> a, c;
  std::vector<std::int8_t> w;
  std::vector<std::int32_t> bias;
  requant_channel_params rq;
  int8::packed_weights packed;
  std::string name;

  int8_product(std::size_t m_, std::size_t n_, std::size_t k_, std::size_t pad, data_kind data, requant_kind rk,
          unsigned seed)
      : m(m_), n(n_), k(k_), lda(k_ + pad), ldc(n_ + (pad * 3) % 5) {
    std::mt19937 rng(seed);
    auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    a.resize(m == 0 ? 0 : (m - 1) * lda + k);
    w.resize(n * k);
    for (auto& x : a) x = static_cast<std::uint8_t>(data == data_kind::random ? uniform(0, 255) : 255);
    for (std::size_t i = 0; i < w.size(); ++i) {
      switch (data) {
        case data_kind::random:
          w[i] = static_cast<std::int8_t>(uniform(-128, 127));
          break;
        case data_kind::extreme_low:
          w[i] = -128;
          break;
        case data_kind::extreme_high:
          w[i] = 127;
          break;
        case data_kind::extreme_mixed:  // each column all -128 or all 127
          w[i] = (i / k) % 2 ? std::int8_t{127} : std::int8_t{-128};
          break;
      }
    }
    bias.resize(n);
    for (auto& b : bias) b = uniform(-(1 << 20), 1 << 20);
    // Scales near 100 / max|acc| keep most outputs off the clamp, so a wrong accumulator
    // shows (an int16 saturation would change acc by thousands).
    const double max_acc = 32640.0 * double(k) + double(1 << 20);
    std::vector<float> scales(n);
    const float common = static_cast<float>(100.0 / max_acc * std::exp2(uniform(-2, 6)));
    for (auto& s : scales) {
      s = rk.per_channel ? static_cast<float>(100.0 / max_acc * std::exp2(uniform(-300, 600) / 100.0)) : common;
      if (rk.large_scales && uniform(0, 3) == 0) s = std::ldexp(1.0f + float(uniform(0, 7)) / 8.0f, uniform(-1, 2));
    }
    const int zp = uniform(0, 255);
    const int qmin = rk.narrow_clamp ? zp : 0, qmax = rk.narrow_clamp ? std::min(255, zp + 24) : 255;
    rq = make_requant_channel_params<std::uint8_t>(scales, zp, qmin, qmax);
    packed = int8::pack_weights(w.data(), n, k);
    c.assign(m * ldc + 1, sentinel);
    name = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " lda+" + std::to_string(lda - k) +
           " ldc+" + std::to_string(ldc - n) + " data " + std::to_string(int(data)) +
           (rk.per_channel ? " per-channel" : " per-tensor") + (rk.narrow_clamp ? " narrow" : "") +
           (rk.large_scales ? " large-scales" : "");
  }

  std::vector<std::uint8_t> expected() const {
    std::vector<std::uint8_t> out = c;
    reference::int8::gemm(m, n, k, a.data(), lda, w.data(), bias.data(), rq.args(), out.data(), ldc);
    return out;
  }

  std::vector<std::uint8_t> run(int8::gemm_path path, auto arch) const {
    std::vector<std::uint8_t> out = c;
    int8::check_gemm_args(m, a.data(), lda, packed, rq.args(), out.data(), ldc);
    int8::gemm<decltype(arch)>(path, m, a.data(), lda, packed, bias.data(), rq.args(), out.data(), ldc);
    return out;
  }
};

/// The first difference between got and want, or "".
std::string first_difference(const int8_product& p, const std::vector<std::uint8_t>& got,
                             const std::vector<std::uint8_t>& want) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      return p.name + " at (" + std::to_string(i / p.ldc) + ", " + std::to_string(i % p.ldc) +
             "): " + std::to_string(got[i]) + " vs " + std::to_string(want[i]);
    }
  }
  return "";
}

/// Runs p on the generic path of every available arch and on every VNNI path this machine
/// runs; each must equal the reference (and leave the sentinels) bit for bit. Returns how
/// many paths ran.
int check_all_paths(const int8_product& p) {
  const std::vector<std::uint8_t> want = p.expected();
  int ran = 0;
  xquant_test::for_each_runnable_arch([&](auto arch) {
    const std::string diff = first_difference(p, p.run(int8::gemm_path::generic, arch), want);
    CHECK_MESSAGE(diff.empty(), "generic<", decltype(arch)::name(), "> ", diff);
    ++ran;
  });
  for (int8::gemm_path path : {int8::gemm_path::avx_vnni, int8::gemm_path::avx512_vnni}) {
    if (!int8::runs_here(path)) continue;
    const std::string diff = first_difference(p, p.run(path, simd::default_arch{}), want);
    CHECK_MESSAGE(diff.empty(), int8::path_name(path), " ", diff);
    ++ran;
  }
  return ran;
}

}  // namespace

TEST_CASE("int8 gemm reference: hand-computed 2x2x3 product") {
  // A = [1 2 3; 255 0 255], W = [1 -2 3; -1 0 127], bias = [14, -444], scales 2^-3 and
  // 2^-7, zero point 3:
  //   (0,0): 14 + 6 = 20,         20 / 8 = 2.5 -> 3 (tie away from zero), + 3 = 6
  //   (0,1): -444 + 380 = -64,   -64 / 128 = -0.5 -> -1 (tie away),        + 3 = 2
  //   (1,0): 14 + 1020 = 1034,    129.25 -> 129,                            + 3 = 132
  //   (1,1): -444 + 32130 = 31686, 247.55 -> 248,                           + 3 = 251
  const std::uint8_t a[] = {1, 2, 3, 255, 0, 255};
  const std::int8_t w[] = {1, -2, 3, -1, 0, 127};
  const std::int32_t bias[] = {14, -444};
  const float scales[] = {0.125f, 0.0078125f};
  const auto rq = make_requant_channel_params<std::uint8_t>(scales, 3);
  std::uint8_t c[4] = {};
  reference::int8::gemm(2, 2, 3, a, 3, w, bias, rq.args(), c, 2);
  CHECK(c[0] == 6);
  CHECK(c[1] == 2);
  CHECK(c[2] == 132);
  CHECK(c[3] == 251);
  std::int32_t sums[2];
  reference::int8::weight_sums(w, 2, 3, sums);
  CHECK(sums[0] == 2);
  CHECK(sums[1] == 126);
}

TEST_CASE("int8 gemm reference: accumulator wraps modulo 2^32 past the int32 range") {
  // 70000 products of 255 * -128 = -2284800000 < -2^31: wraps to 2010167296.
  std::vector<std::uint8_t> a(70000, 255);
  std::vector<std::int8_t> w(70000, -128);
  CHECK(reference::int8::dot(a.data(), w.data(), a.size(), 0) == 2010167296);
  CHECK(reference::int8::dot(a.data(), w.data(), 3, -7) == -7 - 3 * 32640);
}

TEST_CASE("int8 pack_weights: layout, padding and column sums") {
  const std::size_t n = 70, k = 6;  // two panels: 64 and 6 -> 16 wide; 2 groups, the last half padding
  std::vector<std::int8_t> w(n * k);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<std::int8_t>(int(i * 37 % 256) - 128);
  const int8::packed_weights p = int8::pack_weights(w.data(), n, k);
  CHECK(p.n() == n);
  CHECK(p.k() == k);
  CHECK(p.groups() == 2);
  CHECK(p.panels() == 2);
  CHECK(p.panel_width(0) == 64);
  CHECK(p.panel_width(1) == 16);
  CHECK(p.bytes() == 80 * 4 * 2);
  CHECK(reinterpret_cast<std::uintptr_t>(p.panel(0)) % 64 == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(p.panel(1)) % 64 == 0);
  for (std::size_t col = 0; col < 80; ++col) {
    const std::size_t panel = col / 64, c = col % 64, width = p.panel_width(panel);
    for (std::size_t q = 0; q < 8; ++q) {
      const std::int8_t got = p.panel(panel)[q / 4 * 4 * width + c * 4 + q % 4];
      const std::int8_t want = col < n && q < k ? w[col * k + q] : std::int8_t{0};
      REQUIRE_MESSAGE(got == want, "column ", col, " k ", q);
    }
  }
  std::vector<std::int32_t> sums(n);
  reference::int8::weight_sums(w.data(), n, k, sums.data());
  REQUIRE(p.column_sums().size() == n);
  CHECK(std::equal(sums.begin(), sums.end(), p.column_sums().begin()));
  CHECK_THROWS_AS(int8::pack_weights(nullptr, 2, 3), value_error);
}

TEST_CASE("int8 gemm: check_gemm_args rejects bad shapes and clamps") {
  const std::int8_t w[6] = {};
  const auto packed = int8::pack_weights(w, 2, 3);
  const float scales[] = {0.5f, 0.5f};
  const auto rq = make_requant_channel_params<std::uint8_t>(scales, 0);
  std::uint8_t a[6] = {}, c[4] = {};
  CHECK_NOTHROW(int8::check_gemm_args(2, a, 3, packed, rq.args(), c, 2));
  CHECK_THROWS_AS(int8::check_gemm_args(2, a, 2, packed, rq.args(), c, 2), shape_error);
  CHECK_THROWS_AS(int8::check_gemm_args(2, a, 3, packed, rq.args(), c, 1), shape_error);
  CHECK_THROWS_AS(int8::check_gemm_args(2, nullptr, 3, packed, rq.args(), c, 2), value_error);
  requant_channel_args bad = rq.args();
  bad.qmin = -1;  // an int8 clamp for a uint8 output
  CHECK_THROWS_AS(int8::check_gemm_args(2, a, 3, packed, bad, c, 2), value_error);
  bad = rq.args();
  bad.shift = nullptr;
  CHECK_THROWS_AS(int8::check_gemm_args(2, a, 3, packed, bad, c, 2), value_error);
}

TEST_CASE("int8 gemm: madd emulation equals pmaddwd") {
  // The generic fallback (NEON, AVX1, AVX-512F without BW) against the instruction.
#if XSIMD_WITH_SSE2
  using A = xsimd::sse2;
  using I16 = simd::batch<std::int16_t, A>;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> u(-32768, 32767);
  for (int t = 0; t < 2000; ++t) {
    alignas(16) std::int16_t x[8], y[8];
    for (int i = 0; i < 8; ++i) {
      x[i] = static_cast<std::int16_t>(t < 8 ? (t & 1 ? -32768 : 32767) : u(rng));
      y[i] = static_cast<std::int16_t>(t < 8 ? (t & 2 ? -32768 : 32767) : u(rng));
    }
    const auto want = int8::gemm_detail::madd<A>(I16::load_aligned(x), I16::load_aligned(y));
    const auto got = int8::gemm_detail::madd<A>(I16::load_aligned(x), I16::load_aligned(y), xsimd::generic{});
    REQUIRE(xsimd::all(want == got));
  }
#endif
}

TEST_CASE("int8 gemm: every path equals the reference on awkward sizes, random data") {
  // All (M, N) pairs of the awkward sizes, each with 3 values of K from the same list
  // (rotating, so every K meets many M and N), padded lda / ldc, per-channel and per-tensor.
  unsigned seed = 1;
  int products = 0;
  const std::vector<std::size_t> awkward = int8_test::odd_sizes();
  for (std::size_t i = 0; i < awkward.size(); ++i) {
    for (std::size_t j = 0; j < awkward.size(); ++j) {
      for (std::size_t r = 0; r < 3; ++r) {
        const std::size_t k = awkward[(i * 7 + j * 3 + r * 5) % awkward.size()];
        requant_kind rk;
        rk.per_channel = seed % 3 != 0;
        rk.narrow_clamp = seed % 5 == 0;
        rk.large_scales = seed % 7 == 0;
        const int8_product p(awkward[i], awkward[j], k, seed % 4 == 0 ? 0 : seed % 9, data_kind::random, rk, seed);
        check_all_paths(p);
        ++seed;
        ++products;
      }
    }
  }
  CHECK(products == 19 * 19 * 3);
}

/// How many of p's columns the epilogue can fold (requant_fold.hpp) for its weights' bounds:
/// into integer constants, or (as_float) into float ones (where the arch has a hardware FMA).
std::size_t folding_columns(const int8_product& p, bool as_float = false) {
  const requant_channel_args rq = p.rq.args();
  std::size_t count = 0;
  for (std::size_t c = 0; c < p.n; ++c) {
    const auto args =
        std::make_tuple(rq.multiplier[c], rq.shift[c], p.bias[c], p.packed.acc_bounds()[c], rq.zero_point);
    count += as_float ? std::apply(fold_float_requant, args).has_value() : std::apply(fold_requant, args).has_value();
  }
  return count;
}

TEST_CASE("int8 gemm: the float-folded, the folded and the unfolded epilogue all equal the reference") {
  // Random data and the scales of a real layer: every column folds, into float constants
  // too (|acc + bias| <= 2^24). Some scales >= 1/2 (ties possible): those panels keep the
  // unfolded path. N = 150 is three panels, the first all folded, the others with some
  // scales made large, so one call uses both.
  const int8_product folded(37, 70, 91, 1, data_kind::random, requant_kind{}, 31);
  CHECK(folding_columns(folded) == folded.n);
  CHECK(folding_columns(folded, true) == folded.n);
  check_all_paths(folded);
  // In another rounding mode the float form would round differently: the epilogue must
  // notice and take the integer one.
  REQUIRE(std::fesetround(FE_UPWARD) == 0);
  CHECK_FALSE(float_rounding_is_nearest());
  check_all_paths(folded);
  REQUIRE(std::fesetround(FE_TONEAREST) == 0);
#if defined(__SSE__)
  // The SSE rounding mode alone (what the SIMD kernels use; glibc's fegetround reads x87's).
  const unsigned csr = _mm_getcsr();
  _mm_setcsr((csr & ~_MM_ROUND_MASK) | _MM_ROUND_TOWARD_ZERO);
  CHECK_FALSE(float_rounding_is_nearest());
  check_all_paths(folded);
  _mm_setcsr(csr);
#endif
  CHECK(float_rounding_is_nearest());
  // K = 1100: accumulator bounds past 2^24, where only the integer fold is exact.
  const int8_product deep(19, 40, 1100, 0, data_kind::random, requant_kind{}, 34);
  CHECK(folding_columns(deep) == deep.n);
  CHECK(folding_columns(deep, true) == 0);
  check_all_paths(deep);
  requant_kind large;
  large.large_scales = true;
  const int8_product unfolded(37, 70, 91, 1, data_kind::random, large, 32);
  CHECK(folding_columns(unfolded) < unfolded.n);
  check_all_paths(unfolded);
  int8_product mixed(23, 150, 64, 0, data_kind::random, requant_kind{}, 33);
  for (std::size_t c = 64; c < 150; c += 9) {
    mixed.rq.fixed.multiplier[c] = std::int32_t{3} << 29;  // scale 3/4
    mixed.rq.fixed.shift[c] = 31;
    mixed.rq.scale[c] = 0.75f;
  }
  CHECK(folding_columns(mixed) == 150 - 10);
  check_all_paths(mixed);
  // Full folded tiles narrowed 4 vectors at a time: C rows as wide as the tile (N = 16, 32,
  // 48, 64 with ldc = N: the whole tile is contiguous) and 64-column rows inside a wider C.
  unsigned seed = 40;
  for (std::size_t n : {16, 32, 48, 64, 128}) {
    for (std::size_t pad : {0, 2}) {
      requant_kind rk;
      rk.narrow_clamp = seed % 2 == 0;  // the byte clamp of the grouped store
      const int8_product p(23, n, 40, pad, data_kind::random, rk, seed++);
      CHECK(folding_columns(p) == n);
      check_all_paths(p);
    }
  }
}

TEST_CASE("int8 gemm: every K with a few M and N") {
  unsigned seed = 5000;
  for (std::size_t k : int8_test::odd_sizes()) {
    for (std::size_t mn : {std::size_t{1}, std::size_t{7}, std::size_t{65}}) {
      requant_kind rk;
      rk.narrow_clamp = seed % 2 == 0;
      check_all_paths(int8_product(mn, 130 - mn, k, 3, data_kind::random, rk, seed++));
    }
  }
  for (std::size_t k : {0u, 127u, 128u, 129u, 576u, 1027u}) {  // K = 0: C = requantize(bias)
    check_all_paths(int8_product(13, 70, k, 1, data_kind::random, requant_kind{}, seed++));
  }
}

TEST_CASE("int8 gemm: extreme values (A = 255, W = -128 or 127) do not saturate") {
  unsigned seed = 9000;
  for (data_kind data : {data_kind::extreme_low, data_kind::extreme_high, data_kind::extreme_mixed}) {
    for (std::size_t k : {std::size_t{1}, std::size_t{2}, std::size_t{16}, std::size_t{63}, std::size_t{64},
                          std::size_t{577}, std::size_t{4096}}) {
      for (bool per_channel : {true, false}) {
        requant_kind rk;
        rk.per_channel = per_channel;
        const int8_product p(9, 33, k, 2, data, rk, seed++);
        check_all_paths(p);
      }
    }
  }
}

TEST_CASE("int8 gemm: accumulators wrap modulo 2^32 like the reference") {
  // K = 70000 with A = 255, W = -128: the exact sum is below -2^31 and wraps to a positive
  // value; all paths must wrap the same way (a saturating add, e.g. vpdpbusds, gives a
  // negative one). Full tiles (one accumulator chain) and M = 1 tiles (k split over
  // several chains, summed at the end).
  for (std::size_t m : {std::size_t{1}, std::size_t{6}, std::size_t{7}}) {
    for (bool large : {false, true}) {
      requant_kind rk;
      rk.large_scales = large;
      check_all_paths(int8_product(m, 64, 70000, 0, data_kind::extreme_low, rk, 77));
    }
  }
}

TEST_CASE("int8 gemm: null bias is zero and gemm<Arch> takes its default path") {
  int8_product p(11, 40, 37, 2, data_kind::random, requant_kind{}, 123);
  std::fill(p.bias.begin(), p.bias.end(), 0);
  const std::vector<std::uint8_t> want = p.expected();
  std::vector<std::uint8_t> got = p.c;
  int8::gemm(p.m, p.a.data(), p.lda, p.packed, nullptr, p.rq.args(), got.data(), p.ldc);
  CHECK(got == want);
  CHECK(int8::default_path<xsimd::sse2>() == int8::gemm_path::generic);
  if constexpr (int8::compiled(int8::gemm_path::avx512_vnni)) {
    CHECK(int8::default_path<xsimd::avx512bw>() == int8::gemm_path::avx512_vnni);
  }
  if constexpr (int8::compiled(int8::gemm_path::avx_vnni)) {
    CHECK(int8::default_path<xsimd::avx2>() == int8::gemm_path::avx_vnni);
  }
}

TEST_CASE("int8 gemm: runs_here agrees with the compiler's CPU detection") {
  CHECK(int8::runs_here(int8::gemm_path::generic));
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
  // GCC knows both feature names; runs_here reads CPUID itself (for Clang 14).
  CHECK(int8::runs_here(int8::gemm_path::avx512_vnni) ==
        (int8::compiled(int8::gemm_path::avx512_vnni) && __builtin_cpu_supports("avx512vnni") != 0));
  CHECK(int8::runs_here(int8::gemm_path::avx_vnni) ==
        (int8::compiled(int8::gemm_path::avx_vnni) && __builtin_cpu_supports("avxvnni") != 0));
#endif
}

TEST_CASE("int8 gemm: M = 0 and N = 0 write nothing") {
  const int8_product p(0, 5, 7, 1, data_kind::random, requant_kind{}, 3);
  CHECK(p.run(int8::gemm_path::generic, simd::default_arch{}) == p.c);
  const int8_product q(4, 0, 7, 1, data_kind::random, requant_kind{}, 4);
  CHECK(q.run(int8::gemm_path::generic, simd::default_arch{}) == q.c);
}
