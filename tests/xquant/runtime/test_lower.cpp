#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/runtime/lower.hpp"

using namespace xquant;
using runtime::activation_grid;

namespace {

activation_grid grid(float scale, std::int32_t zp, std::int32_t lo, std::int32_t hi) {
  activation_grid g;
  g.scale = scale;
  g.zero_point = zp;
  g.qmin = lo;
  g.qmax = hi;
  return g;
}

// conv 3x3, 2 input channels, 2 outputs, integer weights w[o][c][t] = (o + 1) * (c - t % 3)
nn::weighted_spec small_conv() {
  nn::weighted_spec s;
  s.out = 2;
  s.in = 2;
  s.kernel = 3;
  s.padding = 1;
  for (int o = 0; o < 2; ++o)
    for (int c = 0; c < 2; ++c)
      for (int t = 0; t < 9; ++t) s.weight.push_back((o + 1) * (c - t % 3));
  s.weight_scale = {0.01f, 0.02f};
  s.weight_qmin = -127;
  s.weight_qmax = 127;
  s.bias = {0.5f, -0.25f};
  s.output = grid(0.1f, 3, 0, 255);
  return s;
}

}  // namespace

TEST_CASE("stored_grid keeps uint8 grids and shifts signed 8-bit grids by 128") {
  const activation_grid u = runtime::stored_grid(grid(0.5f, 7, 0, 255), "x");
  CHECK(u.zero_point == 7);
  CHECK(u.qmin == 0);
  const activation_grid s = runtime::stored_grid(grid(0.5f, -3, -128, 127), "x");
  CHECK(s.zero_point == 125);
  CHECK(s.qmin == 0);
  CHECK(s.qmax == 255);
  const activation_grid four = runtime::stored_grid(grid(0.5f, 2, 0, 15), "x");
  CHECK(four.qmax == 15);
  CHECK_THROWS_AS(runtime::stored_grid(grid(0.5f, 0, -32768, 32767), "x"), value_error);
  CHECK_THROWS_AS(runtime::stored_grid(grid(0.0f, 0, 0, 255), "x"), value_error);
  CHECK_THROWS_AS(runtime::stored_grid(grid(std::nanf(""), 0, 0, 255), "x"), value_error);
}

TEST_CASE("fused_clamp turns relu and relu6 into clamp bounds on the output grid") {
  std::int32_t lo = 0, hi = 0;
  runtime::fused_clamp(nn::activation::none, grid(0.1f, 20, 0, 255), lo, hi);
  CHECK((lo == 0 && hi == 255));
  runtime::fused_clamp(nn::activation::relu, grid(0.1f, 20, 0, 255), lo, hi);
  CHECK((lo == 20 && hi == 255));
  runtime::fused_clamp(nn::activation::relu6, grid(0.1f, 20, 0, 255), lo, hi);
  CHECK((lo == 20 && hi == 80));
  runtime::fused_clamp(nn::activation::relu6, grid(0.01f, 0, 0, 255), lo, hi);
  CHECK((lo == 0 && hi == 255));  // 6 / 0.01 = 600 levels: the grid's own bound
}

TEST_CASE("lower_weighted reorders taps to NHWC and folds the input zero point into the bias") {
  const nn::weighted_spec s = small_conv();
  const activation_grid in = grid(0.05f, 10, 0, 255);
  const runtime::lowered_weighted L = runtime::lower_weighted(s, in, s.output, 0, "conv");
  REQUIRE(L.depth == 18);
  // [o][kh][kw][c] from [o][c][kh][kw]
  for (int o = 0; o < 2; ++o)
    for (int t = 0; t < 9; ++t)
      for (int c = 0; c < 2; ++c) CHECK(L.weight[(o * 9 + t) * 2 + c] == (o + 1) * (c - t % 3));
  for (int o = 0; o < 2; ++o) {
    std::int64_t wsum = 0;
    for (int k = 0; k < 18; ++k) wsum += L.weight[o * 18 + k];
    const double acc_scale = 0.05 * s.weight_scale[o];
    const auto bias_q = static_cast<std::int64_t>(std::nearbyint(s.bias[o] / acc_scale));
    CHECK(L.bias[o] == bias_q - 10 * wsum);
    CHECK(L.requant.scale[o] == doctest::Approx(acc_scale / 0.1).epsilon(1e-7));
  }
  CHECK(L.requant.zero_point == 3);
}

TEST_CASE("lowered layer reproduces the float computation within one output step") {
  // y = act(sum (x - z_in) s_in * w s_w + b) quantized on the output grid, vs the integer path.
  nn::weighted_spec s = small_conv();
  s.is_linear = true;
  s.kernel = 1;
  s.padding = 0;
  s.in = 18;
  s.act = nn::activation::relu;
  const activation_grid in = grid(0.05f, 10, 0, 255);
  const runtime::lowered_weighted L = runtime::lower_weighted(s, in, s.output, 0, "dense");
  std::uint32_t state = 12345;
  int exact = 0, total = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<std::uint8_t> x(18);
    for (auto& v : x) {
      state = state * 1664525u + 1013904223u;
      v = static_cast<std::uint8_t>(state >> 24);
    }
    for (std::size_t o = 0; o < 2; ++o) {
      double real = s.bias[o];
      std::int32_t acc = L.bias[o];
      for (std::size_t k = 0; k < 18; ++k) {
        real += (x[k] - 10.0) * 0.05 * s.weight_scale[o] * s.weight[o * 18 + k];
        acc += x[k] * L.weight[o * 18 + k];
      }
      const double expected = std::clamp(std::nearbyint(std::max(real, 0.0) / 0.1) + 3, 0.0, 255.0);
      const int got = kernels::reference::requantize_fixed<std::uint8_t>(
          acc, L.requant.fixed.multiplier[o], L.requant.fixed.shift[o], L.requant.zero_point, L.requant.qmin,
          L.requant.qmax);
      CHECK(std::abs(got - expected) <= 1);
      exact += got == static_cast<int>(expected);
      ++total;
    }
  }
  CHECK(exact >= total * 99 / 100);
}

TEST_CASE("lower_weighted rejects weights wider than int8 and accumulators that can overflow") {
  nn::weighted_spec s = small_conv();
  s.weight_qmin = -32767;
  s.weight_qmax = 32767;
  CHECK_THROWS_AS(runtime::lower_weighted(s, grid(0.05f, 10, 0, 255), s.output, 0, "conv"), value_error);
  s = small_conv();
  s.bias = {1e9f, 0.0f};
  CHECK_THROWS_AS(runtime::lower_weighted(s, grid(0.05f, 10, 0, 255), s.output, 0, "conv"), value_error);
}
