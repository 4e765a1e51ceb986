#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/conv2d.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

namespace {

struct conv_case {
  std::size_t n, c, h, w, o, kh, kw;
  conv2d_options opt;
  bool bias;
};

std::string describe(const conv_case& k) {
  return "x [" + std::to_string(k.n) + "," + std::to_string(k.c) + "," + std::to_string(k.h) + "," +
         std::to_string(k.w) + "] w [" + std::to_string(k.o) + ",.," + std::to_string(k.kh) + "," +
         std::to_string(k.kw) + "] stride " + std::to_string(k.opt.stride_h) + "x" + std::to_string(k.opt.stride_w) +
         " pad " + std::to_string(k.opt.pad_h) + "x" + std::to_string(k.opt.pad_w) + " groups " +
         std::to_string(k.opt.groups) + (k.bias ? " bias" : "");
}

// Gradient checks: kept small, gradcheck runs two forwards per input element.
const std::vector<conv_case> gradcheck_cases = {
    {2, 3, 5, 7, 4, 3, 3, {.pad_h = 1, .pad_w = 1}, true},                                     // odd image, batch 2
    {2, 3, 5, 7, 2, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, false},       // stride 2
    {1, 4, 6, 5, 6, 3, 3, {.stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 0, .groups = 2}, true},  // groups
    {2, 3, 5, 6, 3, 3, 3, {.pad_h = 1, .pad_w = 1, .groups = 3}, true},                        // depthwise s1
    {2, 3, 7, 5, 3, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 3}, false},  // dw s2
    {2, 4, 3, 5, 3, 1, 1, {}, true},                                                            // pointwise
    {2, 3, 5, 5, 2, 1, 1, {.stride_h = 2, .stride_w = 2}, false},                               // 1x1 stride 2
    {1, 2, 4, 6, 3, 2, 3, {.stride_h = 1, .stride_w = 2, .pad_h = 0, .pad_w = 2}, true},        // rectangular
};

var64 conv_weight(const conv_case& k, std::mt19937& rng) {
  return v64(random_array(shape_t{k.o, k.c / k.opt.groups, k.kh, k.kw}, rng));
}

}  // namespace

TEST_CASE("conv2d forward equals a naive direct convolution on many shapes") {
  std::mt19937 rng(7);
  auto pick = [&](std::size_t lo, std::size_t hi) { return std::uniform_int_distribution<std::size_t>(lo, hi)(rng); };
  int checked = 0;
  for (int trial = 0; trial < 120; ++trial) {
    conv_case k{};
    k.opt.groups = pick(1, 3);
    const bool depthwise = pick(0, 3) == 0;
    k.n = pick(1, 3);
    k.c = k.opt.groups * pick(1, 2);
    k.o = depthwise ? k.c : k.opt.groups * pick(1, 3);
    if (depthwise) k.opt.groups = k.c;
    k.kh = pick(1, 4);
    k.kw = pick(1, 4);
    k.h = pick(1, 9);
    k.w = pick(1, 9);
    k.opt.stride_h = pick(1, 3);
    k.opt.stride_w = pick(1, 3);
    k.opt.pad_h = pick(0, 2);
    k.opt.pad_w = pick(0, 2);
    k.bias = pick(0, 1) == 1;
    if (k.h + 2 * k.opt.pad_h < k.kh || k.w + 2 * k.opt.pad_w < k.kw) continue;
    const array<double> x = random_array(shape_t{k.n, k.c, k.h, k.w}, rng);
    const var64 w = conv_weight(k, rng);
    const var64 b = v64(random_array(shape_t{k.o}, rng));
    const array<double> expected = naive_conv2d(x, w.value(), k.bias ? &b.value() : nullptr, k.opt.stride_h,
                                                k.opt.stride_w, k.opt.pad_h, k.opt.pad_w, k.opt.groups);
    for (auto algo : {conv2d_algorithm::automatic, conv2d_algorithm::gemm}) {
      conv2d_options opt = k.opt;
      opt.algorithm = algo;
      const var64 y = conv2d(v64(x), w, k.bias ? &b : nullptr, opt);
      INFO(describe(k));
      CHECK(max_abs_diff(y.value(), expected) < 1e-12);
    }
    ++checked;
  }
  CHECK(checked > 80);
}

TEST_CASE("conv2d passes gradcheck: stride, padding, groups, depthwise, 1x1, odd sizes") {
  std::mt19937 rng(11);
  for (const conv_case& k : gradcheck_cases) {
    for (auto algo : {conv2d_algorithm::automatic, conv2d_algorithm::gemm}) {
      if (algo == conv2d_algorithm::gemm && k.opt.groups != k.c) continue;  // same path as automatic
      INFO(describe(k), algo == conv2d_algorithm::gemm ? " (forced im2col)" : "");
      conv2d_options opt = k.opt;
      opt.algorithm = algo;
      vars64 inputs;
      inputs.reserve(3);
      inputs.push_back(v64(random_array(shape_t{k.n, k.c, k.h, k.w}, rng)));
      inputs.push_back(conv_weight(k, rng));
      if (k.bias) inputs.push_back(v64(random_array(shape_t{k.o}, rng)));
      auto f = [opt](const vars64& in) { return conv2d(in[0], in[1], in.size() > 2 ? &in[2] : nullptr, opt); };
      NN_GRADCHECK(f, inputs);
    }
  }
}

TEST_CASE("direct depthwise and im2col give the same forward and gradients") {
  std::mt19937 rng(3);
  for (std::size_t stride : {1, 2}) {
    for (std::size_t pad : {0, 1, 2}) {
      const std::size_t c = 5;
      const array<double> x = random_array(shape_t{3, c, 9, 8}, rng);
      const array<double> w = random_array(shape_t{c, 1, 3, 3}, rng);
      const array<double> b = random_array(shape_t{c}, rng);
      const std::size_t oh = (9 + 2 * pad - 3) / stride + 1, ow = (8 + 2 * pad - 3) / stride + 1;
      const array<double> seed = random_array(shape_t{3, c, oh, ow}, rng);
      std::vector<array<double>> results[2];  // y, dx, dw, db of each algorithm
      for (int k = 0; k < 2; ++k) {
        const var64 xv(x, true), wv(w, true), bv(b, true);
        const conv2d_options opt{.stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad, .groups = c,
                                 .algorithm = k == 0 ? conv2d_algorithm::automatic : conv2d_algorithm::gemm};
        const var64 y = conv2d(xv, wv, &bv, opt);
        autograd::backward(y, &seed);
        results[k] = {y.value(), xv.grad(), wv.grad(), bv.grad()};
      }
      INFO("stride ", stride, " pad ", pad);
      for (std::size_t i = 0; i < 4; ++i) CHECK(max_abs_diff(results[0][i], results[1][i]) < 1e-12);
    }
  }
}

TEST_CASE("conv2d computes only the gradients that are wanted, and accumulates them") {
  std::mt19937 rng(5);
  const var64 x(random_array(shape_t{2, 2, 4, 4}, rng), false);
  var64 w(random_array(shape_t{3, 2, 3, 3}, rng), true);
  const array<double> seed = random_array(shape_t{2, 3, 2, 2}, rng);
  autograd::backward(conv2d(x, w), &seed);
  CHECK_FALSE(x.has_grad());
  const array<double> once = w.grad();
  autograd::backward(conv2d(x, w), &seed);
  CHECK(max_abs_diff(w.grad(), array<double>(once * 2.0)) < 1e-12);
}

TEST_CASE("conv2d rejects bad shapes with shape_error") {
  const var64 x(array<double>(shape_t{2, 4, 5, 5}, 0.0));
  auto w = [](shape_t s) { return var64(array<double>(s, 0.0)); };
  CHECK_THROWS_AS(conv2d(var64(array<double>(shape_t{4, 5, 5}, 0.0)), w({3, 4, 3, 3})), shape_error);  // rank 3
  CHECK_THROWS_AS(conv2d(x, w({3, 4, 3})), shape_error);                                                  // weight rank
  CHECK_THROWS_AS(conv2d(x, w({3, 3, 3, 3})), shape_error);                                   // channel mismatch
  CHECK_THROWS_AS(conv2d(x, w({3, 2, 3, 3}), nullptr, {.groups = 2}), shape_error);          // 3 % 2 != 0
  CHECK_THROWS_AS(conv2d(x, w({4, 1, 3, 3}), nullptr, {.groups = 3}), shape_error);          // 4 % 3 != 0
  CHECK_THROWS_AS(conv2d(x, w({3, 4, 7, 3})), shape_error);                                   // 7 > 5
  CHECK_NOTHROW(conv2d(x, w({3, 4, 7, 3}), nullptr, {.pad_h = 1, .pad_w = 1}));               // 7 <= 5 + 2
  CHECK_THROWS_AS(conv2d(var64(array<double>(shape_t{0, 4, 5, 5}, 0.0)), w({3, 4, 3, 3})), shape_error);  // empty
  const var64 bad_bias(array<double>(shape_t{2}, 0.0));
  CHECK_THROWS_AS(conv2d(x, w({3, 4, 3, 3}), &bad_bias), shape_error);
  CHECK_THROWS_AS(conv2d(x, w({3, 4, 3, 3}), nullptr, {.stride_h = 0}), value_error);
  try {
    conv2d(x, w({3, 3, 3, 3}));
  } catch (const shape_error& e) {
    CHECK(std::string(e.what()).find("input channels per group") != std::string::npos);
  }
}

TEST_CASE("conv2d gives the same bits with 1 and 2 threads (grid, im2col and depthwise)") {
  // 11 images: the 8 fixed pieces of the dW sums are uneven.
  std::mt19937 rng(9);
  const array<float> x = random_array<float>(shape_t{11, 4, 9, 9}, rng);
  for (std::size_t groups : {1, 4}) {
    for (auto algo : {conv2d_algorithm::automatic, conv2d_algorithm::gemm}) {
      const std::size_t out = groups == 1 ? 6 : 4;
      const array<float> w = random_array<float>(shape_t{out, 4 / groups, 3, 3}, rng);
      const array<float> b = random_array<float>(shape_t{out}, rng);
      auto run = [&] {
        autograd::variable xv(x, true), wv(w, true), bv(b, true);
        const conv2d_options opt{.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = groups,
                                 .algorithm = algo};
        const autograd::variable y = conv2d(xv, wv, &bv, opt);
        const array<float> seed(y.value() * 0.5f + 0.25f);
        autograd::backward(y, &seed);
        return std::vector<array<float>>{y.value(), xv.grad(), wv.grad(), bv.grad()};
      };
      const auto one = run();
      threads_guard threads(2);
      const auto first = run();
      const auto second = run();
      INFO("groups ", groups, algo == conv2d_algorithm::gemm ? " im2col" : " automatic");
      for (std::size_t i = 0; i < first.size(); ++i) {
        CHECK(bit_identical(first[i], second[i]));
        CHECK(bit_identical(one[i], first[i]));
      }
    }
  }
}
