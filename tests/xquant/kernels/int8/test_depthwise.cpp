#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "int8_test_support.hpp"
#include "xquant/kernels/int8/depthwise.hpp"
#include "xquant/kernels/reference/int8/depthwise.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/kernels/requant_fold.hpp"

using namespace xquant;
using namespace xquant::kernels;
using int8::depthwise_geometry;
using int8::nhwc_shape;

namespace {

/// One layer: input, weights [c][9], folded bias, zero point, requantization.
struct layer {
  depthwise_geometry g;
  std::vector<std::uint8_t> x;
  std::vector<std::int8_t> w;
  std::vector<std::int32_t> bias;
  std::uint8_t zp = 0;
  requant_channel_params rq;

  std::vector<std::uint8_t> reference() const {
    std::vector<std::uint8_t> out(g.out().size());
    reference::int8::depthwise3x3(x.data(), g, w.data(), bias.data(), zp, rq.args(), out.data());
    return out;
  }
};

/// The unfolded form: b + sum over the taps inside the image of w * (x - zp), no padding.
std::int32_t unfolded_acc(const layer& l, std::int32_t b, std::size_t n, std::size_t oh, std::size_t ow,
                          std::size_t c) {
  std::int32_t acc = b;
  for (std::size_t kh = 0; kh < 3; ++kh) {
    for (std::size_t kw = 0; kw < 3; ++kw) {
      const std::size_t ih = oh * l.g.stride + kh, iw = ow * l.g.stride + kw;  // plus 1
      if (ih < 1 || iw < 1 || ih > l.g.in.h || iw > l.g.in.w) continue;
      acc += l.w[c * 9 + kh * 3 + kw] * (l.x[l.g.in.at(n, ih - 1, iw - 1) + c] - l.zp);
    }
  }
  return acc;
}

layer random_layer(int8_test::generator& gen, const nhwc_shape& in, std::size_t stride, bool per_channel) {
  layer l;
  l.g = int8::make_depthwise_geometry(in, stride);
  const int mode = gen.uniform(0, 5);  // 0: all extremes
  l.x = gen.bytes(in.size(), mode == 0 ? 1 : 8);
  l.w = gen.weights(in.c * 9, mode == 0 ? 1 : 8);
  l.zp = static_cast<std::uint8_t>(mode == 0 ? 255 * gen.uniform(0, 1) : gen.uniform(0, 255));
  // Bias and scales in the range of a real layer (|acc| ~ 5e4, outputs spread over the
  // uint8 range), some scales above 1/2 (the clamped fixed-point branch) and some tiny.
  l.bias.resize(in.c);
  for (auto& b : l.bias) {
    b = mode == 0 ? (gen.uniform(0, 1) ? int8::max_depthwise_bias : -int8::max_depthwise_bias)
                  : gen.uniform(-70000, 70000);
  }
  const auto scale = [&] {
    switch (gen.uniform(0, 7)) {
      case 0:
        return gen.log_uniform(0.5f, 2.0f);
      case 1:
        return gen.log_uniform(1e-9f, 1e-4f);
      default:
        return gen.log_uniform(5e-4f, 5e-3f);
    }
  };
  std::vector<float> scales(in.c);
  const float shared = scale();
  for (auto& s : scales) s = per_channel ? scale() : shared;
  if (mode == 0) {  // extreme accumulators through scales that saturate, round to 0 or sit between
    const float extreme_scales[] = {1.0f, 1e-9f, 0x1p-24f, 0x1p-31f, 0x1.8p-25f};
    scales.assign(in.c, extreme_scales[gen.uniform(0, 4)]);
  }
  const int out_zp = gen.uniform(0, 255);
  const int lo = gen.uniform(0, 2) ? 0 : gen.uniform(0, 255);  // sometimes a fused clamp
  const int hi = gen.uniform(0, 2) ? 255 : gen.uniform(lo, 255);
  l.rq = make_requant_channel_params<std::uint8_t>(scales, out_zp, lo, hi);
  return l;
}

void compare_all_archs(const layer& l) {
  const std::vector<std::uint8_t> want = l.reference();
  const int8::depthwise_packed packed = int8::pack_depthwise3x3(l.w, l.bias, l.zp);
  int8_test::for_each_runnable_arch([&](auto arch) {
    using Arch = decltype(arch);
    std::vector<std::uint8_t> got(want.size());
    std::vector<std::uint8_t> scratch(int8::depthwise_scratch(l.g));
    int8::depthwise3x3<Arch>(l.x.data(), l.g, packed, l.rq.args(), got.data(), scratch.data());
    INFO("arch ", std::string(Arch::name()), ", in [", l.g.in.n, ", ", l.g.in.h, ", ", l.g.in.w, ", ", l.g.in.c,
         "], stride ", l.g.stride);
    CHECK_MESSAGE(want == got, int8_test::first_difference(want, got));
  });
}

}  // namespace

TEST_CASE("depthwise 3x3 int8: hand-made sums and zero-point padding") {
  // [1][3][3][1] image 1..9, all weights 1, bias folded for zp 10: b - 10 * 9 with b = 0.
  layer l;
  l.g = int8::make_depthwise_geometry({1, 3, 3, 1}, 1);
  l.x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  l.w.assign(9, 1);
  l.zp = 10;
  l.bias = {-90};
  const std::vector<float> one = {1.0f};
  l.rq = make_requant_channel_params<std::uint8_t>(one, 100);
  // Output = 100 + sum over the inside taps of (x - 10): padding adds nothing.
  // (0,0): 1+2+4+5 - 40 = -28; (1,1): 45 - 90 = -45; (0,1): 1+2+3+4+5+6 - 60 = -39.
  const std::vector<std::uint8_t> out = l.reference();
  CHECK(int{out[0]} == 72);
  CHECK(int{out[1]} == 61);
  CHECK(int{out[4]} == 55);
  compare_all_archs(l);

  // Stride 2 on 4x4: output 2x2; output (1,1) reads rows/cols 1..3, all inside.
  l.g = int8::make_depthwise_geometry({1, 4, 4, 1}, 2);
  REQUIRE(l.g.out_h == 2);
  REQUIRE(l.g.out_w == 2);
  l.x.resize(16);
  for (std::size_t i = 0; i < 16; ++i) l.x[i] = static_cast<std::uint8_t>(i);
  const std::vector<std::uint8_t> out2 = l.reference();
  // rows 1..3 x cols 1..3: 5+6+7+9+10+11+13+14+15 = 90, minus 90.
  CHECK(int{out2[3]} == 100);
  compare_all_archs(l);
}

TEST_CASE("depthwise 3x3 int8: folded bias plus zero-point padding equals the unfolded sum") {
  int8_test::generator gen(11);
  for (std::size_t trial = 0; trial < 20; ++trial) {
    const nhwc_shape in{1 + trial % 2 * 2, 1 + trial % 7, 2 + trial % 5, 1 + trial % 9};
    layer l = random_layer(gen, in, 1 + trial % 2, trial % 3 != 0);
    std::vector<std::int32_t> unfolded(in.c);
    for (std::size_t c = 0; c < in.c; ++c) {
      unfolded[c] = gen.uniform(-100000, 100000);
      std::int32_t sum_w = 0;
      for (std::size_t t = 0; t < 9; ++t) sum_w += l.w[c * 9 + t];
      l.bias[c] = unfolded[c] - l.zp * sum_w;
    }
    const std::vector<std::uint8_t> out = l.reference();
    const auto rq = l.rq.args();
    for (std::size_t n = 0; n < in.n; ++n) {
      for (std::size_t oh = 0; oh < l.g.out_h; ++oh) {
        for (std::size_t ow = 0; ow < l.g.out_w; ++ow) {
          for (std::size_t c = 0; c < in.c; ++c) {
            const std::int32_t acc = unfolded_acc(l, unfolded[c], n, oh, ow, c);
            const int want = reference::requantize_fixed<std::uint8_t>(acc, rq.multiplier[c], rq.shift[c],
                                                                       rq.zero_point, rq.qmin, rq.qmax);
            REQUIRE(int{out[l.g.out().at(n, oh, ow) + c]} == want);
          }
        }
      }
    }
    compare_all_archs(l);
  }
}

TEST_CASE("depthwise 3x3 int8: every arch equals the reference on odd sizes") {
  int8_test::generator gen(5);
  for (std::size_t c : int8_test::odd_sizes()) {
    for (const auto& hw : int8_test::odd_spatial()) {
      for (std::size_t stride = 1; stride <= 2; ++stride) {
        const std::size_t batch = (c + hw[0] + stride) % 3 == 0 ? 3 : 1;
        compare_all_archs(random_layer(gen, {batch, hw[0], hw[1], c}, stride, (c + hw[1]) % 2 == 0));
      }
    }
  }
  // Wider shapes like the models': 96 x 14 x 14 and 144 x 28 x 28, per channel.
  compare_all_archs(random_layer(gen, {1, 14, 14, 96}, 1, true));
  compare_all_archs(random_layer(gen, {2, 28, 28, 144}, 2, true));
  compare_all_archs(random_layer(gen, {1, 9, 9, 24}, 1, false));
}

TEST_CASE("depthwise 3x3 int8: folded and unfolded channel chunks") {
  // 300 channels are two chunks of folded constants (256 + 44), each image framed again for
  // the second. Scales of a real layer: every channel folds; then one scale of 3/4 in the
  // second chunk (ties possible) sends that chunk, and only it, down the unfolded path.
  // Every folding channel here also folds into float constants, except one given a large
  // bias.
  int8_test::generator gen(17);
  for (std::size_t stride : {std::size_t{1}, std::size_t{2}}) {
    layer l = random_layer(gen, {2, 5, 6, 300}, stride, true);
    std::vector<float> scales(300);
    for (auto& s : scales) s = gen.log_uniform(5e-4f, 5e-3f);
    l.rq = make_requant_channel_params<std::uint8_t>(scales, 3, 0, 255);
    const int8::depthwise_packed packed = int8::pack_depthwise3x3(l.w, l.bias, l.zp);
    const auto folds = [&](std::size_t c0, std::size_t c1) {
      std::size_t count = 0;
      for (std::size_t c = c0; c < c1; ++c)
        count += fold_requant(l.rq.fixed.multiplier[c], l.rq.fixed.shift[c], 0, packed.bound[c], 3).has_value();
      return count;
    };
    const auto float_folds = [&](const int8::depthwise_packed& p, std::size_t c0, std::size_t c1) {
      std::size_t count = 0;
      for (std::size_t c = c0; c < c1; ++c)
        count += fold_float_requant(l.rq.fixed.multiplier[c], l.rq.fixed.shift[c], 0, p.bound[c], 3).has_value();
      return count;
    };
    CHECK(folds(0, 300) == 300);
    CHECK(float_folds(packed, 0, 300) == 300);
    compare_all_archs(l);
    // A bias past 2^24 in the first chunk: it still folds, but not into float constants,
    // so that chunk takes the integer fold on every arch.
    l.bias[100] = 1 << 25;
    const int8::depthwise_packed wide = int8::pack_depthwise3x3(l.w, l.bias, l.zp);
    CHECK(fold_requant(l.rq.fixed.multiplier[100], l.rq.fixed.shift[100], 0, wide.bound[100], 3).has_value());
    CHECK(float_folds(wide, 0, 256) == 255);
    compare_all_archs(l);
    scales[270] = 0.75f;
    l.rq = make_requant_channel_params<std::uint8_t>(scales, 3, 0, 255);
    CHECK(folds(0, 256) == 256);
    CHECK(folds(256, 300) == 43);
    compare_all_archs(l);
  }
}

TEST_CASE("depthwise 3x3 int8: geometry and packing validation") {
  CHECK(int8::make_depthwise_geometry({1, 7, 6, 3}, 2).out_h == 4);
  CHECK(int8::make_depthwise_geometry({1, 7, 6, 3}, 2).out_w == 3);
  CHECK(int8::make_depthwise_geometry({1, 7, 6, 3}, 1).out_w == 6);
  CHECK_THROWS_AS((void)int8::make_depthwise_geometry({1, 7, 6, 3}, 3), shape_error);
  CHECK_THROWS_AS((void)int8::make_depthwise_geometry({1, 0, 6, 3}, 1), shape_error);
  const std::vector<std::int8_t> w(18, 1);
  const std::vector<std::int8_t> w2 = {1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3, -4, -5, -6, -7, -8, -9};
  const std::vector<std::int32_t> b = {0, 0};
  CHECK_NOTHROW((void)int8::pack_depthwise3x3(w, b, 0));
  CHECK_THROWS_AS((void)int8::pack_depthwise3x3(w, std::vector<std::int32_t>{0}, 0), shape_error);
  CHECK_THROWS_AS((void)int8::pack_depthwise3x3(w, b, 256), value_error);
  CHECK_THROWS_AS((void)int8::pack_depthwise3x3(w, b, -1), value_error);
  CHECK_THROWS_AS((void)int8::pack_depthwise3x3(w, std::vector<std::int32_t>{0, (1 << 30) + 1}, 0), value_error);
  const int8::depthwise_packed p = int8::pack_depthwise3x3(w2, b, 7);
  CHECK(p.weights[0] == 1);
  CHECK(p.weights[1] == -1);  // tap-major: [tap][channel]
  CHECK(p.weights[2 * 8 + 1] == -9);
  CHECK(int{p.zero_point} == 7);
  const std::vector<float> scales = {0.5f, 0.25f};
  const requant_channel_params rq = make_requant_channel_params<std::uint8_t>(scales, 0);
  CHECK_NOTHROW(int8::check_depthwise(int8::make_depthwise_geometry({1, 3, 3, 2}, 1), p, rq));
  CHECK_THROWS_AS(int8::check_depthwise(int8::make_depthwise_geometry({1, 3, 3, 3}, 1), p, rq), shape_error);
  const requant_channel_params rq1 = make_requant_channel_params<std::uint8_t>(std::vector<float>{0.5f}, 0);
  CHECK_THROWS_AS(int8::check_depthwise(int8::make_depthwise_geometry({1, 3, 3, 2}, 1), p, rq1), shape_error);
}
