// The padded-grid conv2d path (detail/padded_grid.hpp) against the naive float64
// convolution, gradcheck, and the im2col path (forward and every gradient, float64 and
// float32), on awkward shapes: odd sizes, 1..65 channels, kernels 1..5, padding 0..2,
// strides 1..3, groups.

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/conv2d.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

namespace {

struct grid_case {
  std::size_t n, c, h, w, o, kh, kw;
  conv2d_options opt;
  bool bias;
};

std::string describe(const grid_case& k) {
  return "x [" + std::to_string(k.n) + "," + std::to_string(k.c) + "," + std::to_string(k.h) + "," +
         std::to_string(k.w) + "] w [" + std::to_string(k.o) + ",.," + std::to_string(k.kh) + "," +
         std::to_string(k.kw) + "] stride " + std::to_string(k.opt.stride_h) + "x" + std::to_string(k.opt.stride_w) +
         " pad " + std::to_string(k.opt.pad_h) + "x" + std::to_string(k.opt.pad_w) + " groups " +
         std::to_string(k.opt.groups) + (k.bias ? " bias" : "");
}

bool valid(const grid_case& k) { return k.h + 2 * k.opt.pad_h >= k.kh && k.w + 2 * k.opt.pad_w >= k.kw; }

/// y, dx, dw (and db) of conv2d with `algo` for the seed gradient `seed`.
template <class T>
std::vector<array<T>> run_conv(const grid_case& k, conv2d_algorithm algo, const array<T>& x, const array<T>& w,
                               const array<T>& b, const array<T>* seed) {
  autograd::basic_variable<T> xv(x, true), wv(w, true), bv(b, true);
  conv2d_options opt = k.opt;
  opt.algorithm = algo;
  const autograd::basic_variable<T> y = conv2d(xv, wv, k.bias ? &bv : nullptr, opt);
  autograd::backward(y, seed);
  std::vector<array<T>> r{y.value(), xv.grad(), wv.grad()};
  if (k.bias) r.push_back(bv.grad());
  return r;
}

grid_case random_case(std::mt19937& rng, bool big_channels) {
  auto pick = [&](std::size_t lo, std::size_t hi) { return std::uniform_int_distribution<std::size_t>(lo, hi)(rng); };
  grid_case k{};
  k.opt.groups = pick(0, 4) == 0 ? pick(2, 3) : 1;
  k.n = pick(1, 3);
  const std::size_t cmax = big_channels ? 65 : 4;
  k.c = k.opt.groups * pick(1, (cmax + k.opt.groups - 1) / k.opt.groups);
  k.o = k.opt.groups * pick(1, (cmax + k.opt.groups - 1) / k.opt.groups);
  const std::size_t kernels[] = {1, 2, 3, 3, 3, 4, 5};
  k.kh = kernels[pick(0, 6)];
  k.kw = pick(0, 2) == 0 ? kernels[pick(0, 6)] : k.kh;
  k.h = pick(1, big_channels ? 12 : 11);
  k.w = pick(1, big_channels ? 12 : 11);
  k.opt.stride_h = pick(0, 2) == 0 ? pick(2, 3) : 1;
  k.opt.stride_w = pick(0, 2) == 0 ? pick(2, 3) : k.opt.stride_h;
  k.opt.pad_h = pick(0, 2);
  k.opt.pad_w = pick(0, 2) == 0 ? pick(0, 2) : k.opt.pad_h;
  k.bias = pick(0, 1) == 1;
  return k;
}

}  // namespace

TEST_CASE("padded-grid conv2d forward equals the naive float64 convolution") {
  std::mt19937 rng(21);
  int checked = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const grid_case k = random_case(rng, trial % 3 == 0);
    if (!valid(k)) continue;
    const array<double> x = random_array(shape_t{k.n, k.c, k.h, k.w}, rng);
    const array<double> w = random_array(shape_t{k.o, k.c / k.opt.groups, k.kh, k.kw}, rng);
    const array<double> b = random_array(shape_t{k.o}, rng);
    const array<double> expected = naive_conv2d(x, w, k.bias ? &b : nullptr, k.opt.stride_h, k.opt.stride_w,
                                                k.opt.pad_h, k.opt.pad_w, k.opt.groups);
    conv2d_options opt = k.opt;
    opt.algorithm = conv2d_algorithm::padded_grid;
    const var64 bv(b);
    const var64 y = conv2d(var64(x), var64(w), k.bias ? &bv : nullptr, opt);
    INFO(describe(k));
    CHECK(max_abs_diff(y.value(), expected) < 1e-11);
    ++checked;
  }
  CHECK(checked > 200);
}

TEST_CASE("padded-grid conv2d passes gradcheck") {
  const std::vector<grid_case> cases = {
      {2, 3, 5, 7, 4, 3, 3, {.pad_h = 1, .pad_w = 1}, true},                                // 3x3 pad 1, odd
      {1, 2, 6, 5, 3, 3, 3, {}, false},                                                     // pad 0
      {2, 2, 4, 5, 2, 5, 5, {.pad_h = 2, .pad_w = 2}, true},                                // 5x5 pad 2
      {1, 3, 7, 6, 2, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}, true},  // stride 2
      {1, 4, 6, 5, 4, 3, 2, {.stride_h = 1, .stride_w = 3, .pad_h = 2, .pad_w = 1, .groups = 2}, false},
      {2, 3, 4, 4, 2, 1, 1, {.pad_h = 1, .pad_w = 0}, true},                   // 1x1 with padding
      {1, 3, 5, 5, 3, 1, 1, {.stride_h = 2, .stride_w = 2}, false},            // 1x1 stride 2
      {2, 3, 5, 6, 3, 3, 3, {.pad_h = 1, .pad_w = 1, .groups = 3}, true},      // depthwise shape
      {1, 1, 1, 1, 2, 3, 3, {.pad_h = 1, .pad_w = 1}, true},                   // 1x1 image
  };
  std::mt19937 rng(23);
  for (const grid_case& k : cases) {
    INFO(describe(k));
    conv2d_options opt = k.opt;
    opt.algorithm = conv2d_algorithm::padded_grid;
    vars64 inputs;
    inputs.reserve(3);
    inputs.push_back(v64(random_array(shape_t{k.n, k.c, k.h, k.w}, rng)));
    inputs.push_back(v64(random_array(shape_t{k.o, k.c / k.opt.groups, k.kh, k.kw}, rng)));
    if (k.bias) inputs.push_back(v64(random_array(shape_t{k.o}, rng)));
    auto f = [opt](const vars64& in) { return conv2d(in[0], in[1], in.size() > 2 ? &in[2] : nullptr, opt); };
    NN_GRADCHECK(f, inputs);
  }
}

TEST_CASE("padded-grid and im2col paths agree: forward, dX, dW, db (float64, many shapes)") {
  std::mt19937 rng(25);
  int checked = 0;
  for (int trial = 0; trial < 150; ++trial) {
    const grid_case k = random_case(rng, trial % 2 == 0);
    if (!valid(k)) continue;
    const array<double> x = random_array(shape_t{k.n, k.c, k.h, k.w}, rng);
    const array<double> w = random_array(shape_t{k.o, k.c / k.opt.groups, k.kh, k.kw}, rng);
    const array<double> b = random_array(shape_t{k.o}, rng);
    const std::size_t oh = (k.h + 2 * k.opt.pad_h - k.kh) / k.opt.stride_h + 1;
    const std::size_t ow = (k.w + 2 * k.opt.pad_w - k.kw) / k.opt.stride_w + 1;
    const array<double> seed = random_array(shape_t{k.n, k.o, oh, ow}, rng);
    const auto grid = run_conv(k, conv2d_algorithm::padded_grid, x, w, b, &seed);
    const auto gemm = run_conv(k, conv2d_algorithm::gemm, x, w, b, &seed);
    INFO(describe(k));
    for (std::size_t i = 0; i < grid.size(); ++i) {
      INFO("output ", i, " (y, dx, dw, db)");
      CHECK(max_abs_diff(grid[i], gemm[i]) < 1e-10);
    }
    ++checked;
  }
  CHECK(checked > 100);
}

TEST_CASE("padded-grid and im2col paths agree in float32 on the reference models' shapes") {
  // (C, H, O, stride): ResNet / CNN 3x3 pad 1 layers on Fashion-MNIST.
  const std::size_t shapes[][4] = {{1, 28, 16, 1}, {16, 28, 16, 1}, {16, 28, 32, 2}, {32, 14, 32, 1},
                                   {32, 14, 64, 2}, {64, 7, 64, 1},  {32, 14, 64, 1}, {1, 28, 32, 1}};
  std::mt19937 rng(27);
  for (const auto& s : shapes) {
    const grid_case k{3, s[0], s[1], s[1], s[2], 3, 3, {.stride_h = s[3], .stride_w = s[3], .pad_h = 1, .pad_w = 1},
                      true};
    const array<float> x = random_array<float>(shape_t{k.n, k.c, k.h, k.w}, rng);
    const array<float> w = random_array<float>(shape_t{k.o, k.c, 3, 3}, rng);
    const array<float> b = random_array<float>(shape_t{k.o}, rng);
    const std::size_t oh = (k.h - 1) / s[3] + 1;
    const array<float> seed = random_array<float>(shape_t{k.n, k.o, oh, oh}, rng);
    const auto grid = run_conv(k, conv2d_algorithm::padded_grid, x, w, b, &seed);
    const auto gemm = run_conv(k, conv2d_algorithm::gemm, x, w, b, &seed);
    const auto autom = run_conv(k, conv2d_algorithm::automatic, x, w, b, &seed);
    INFO(describe(k));
    for (std::size_t i = 0; i < grid.size(); ++i) {
      INFO("output ", i, " (y, dx, dw, db)");
      // Sums of up to 9 * 64 (y, dx) or 3 * 28 * 28 (dw) products of magnitude <= 1.
      const double tol = i == 2 ? 2e-3 : 2e-4;
      CHECK(max_abs_diff(array<double>(xt::cast<double>(grid[i])), array<double>(xt::cast<double>(gemm[i]))) < tol);
      CHECK(bit_identical(autom[i], grid[i]));  // automatic takes the padded grid here
    }
  }
}

TEST_CASE("automatic picks the padded grid for kernels > 1x1 with little column overhead") {
  namespace fd = xquant::nn::functional::detail;
  using fd::conv_geometry;
  auto geom = [](std::size_t h, std::size_t k, std::size_t s, std::size_t p) {
    conv_geometry g{.n = 1, .c = 4, .h = h, .w = h, .o = 4, .kh = k, .kw = k, .sh = s, .sw = s, .ph = p, .pw = p};
    g.oh = fd::window_output(h, k, s, p);
    g.ow = fd::window_output(h, k, s, p);
    return g;
  };
  const auto automatic = conv2d_algorithm::automatic;
  CHECK(fd::use_padded_grid(geom(28, 3, 1, 1), automatic));
  CHECK(fd::use_padded_grid(geom(7, 3, 1, 1), automatic));
  CHECK(fd::use_padded_grid(geom(28, 3, 2, 1), automatic));
  CHECK(fd::use_padded_grid(geom(14, 3, 2, 1), automatic));
  CHECK_FALSE(fd::use_padded_grid(geom(28, 1, 1, 0), automatic));  // pointwise: no im2col at all
  CHECK_FALSE(fd::use_padded_grid(geom(28, 1, 2, 0), automatic));  // 1x1 stride 2: a gather
  CHECK_FALSE(fd::use_padded_grid(geom(4, 3, 1, 1), automatic));   // 6 columns for 4
  CHECK_FALSE(fd::use_padded_grid(geom(28, 3, 1, 1), conv2d_algorithm::gemm));
  CHECK(fd::use_padded_grid(geom(4, 3, 1, 1), conv2d_algorithm::padded_grid));
}

TEST_CASE("padded-grid conv2d gives the same bits with 1 and 2 threads") {
  std::mt19937 rng(29);
  const grid_case k{5, 6, 9, 11, 8, 3, 3, {.pad_h = 1, .pad_w = 1, .algorithm = conv2d_algorithm::padded_grid}, true};
  const array<float> x = random_array<float>(shape_t{k.n, k.c, k.h, k.w}, rng);
  const array<float> w = random_array<float>(shape_t{k.o, k.c, 3, 3}, rng);
  const array<float> b = random_array<float>(shape_t{k.o}, rng);
  const array<float> seed = random_array<float>(shape_t{k.n, k.o, k.h, k.w}, rng);
  const auto one = run_conv(k, conv2d_algorithm::padded_grid, x, w, b, &seed);
  threads_guard guard(2);
  const auto first = run_conv(k, conv2d_algorithm::padded_grid, x, w, b, &seed);
  const auto second = run_conv(k, conv2d_algorithm::padded_grid, x, w, b, &seed);
  for (std::size_t i = 0; i < first.size(); ++i) {
    CHECK(bit_identical(first[i], second[i]));
    CHECK(bit_identical(one[i], first[i]));
  }
}
