#pragma once
// Helpers shared by the nn tests: random tensors, a naive float64 convolution (the
// specification the im2col and depthwise paths are checked against) and gradcheck glue.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstddef>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <doctest/doctest.h>

#include "xquant/autograd/gradcheck.hpp"
#include "xquant/autograd/graph.hpp"
#include "xquant/autograd/ops.hpp"
#include "xquant/autograd/variable.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/core/tensor.hpp"

namespace nn_test {

using xquant::array;
using xquant::shape_t;
using var64 = xquant::autograd::basic_variable<double>;
using vars64 = std::vector<var64>;

template <class T = double>
array<T> random_array(const shape_t& shape, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
  array<T> a(shape);
  std::uniform_real_distribution<double> dist(lo, hi);
  for (auto& v : a) v = static_cast<T>(dist(rng));
  return a;
}

/// Values k * spacing + offset for k = 0..n-1 in random order, centred on 0: no ties and no
/// value within spacing/2 of another, so max pooling and ReLU stay away from their kinks.
inline array<double> distinct_array(const shape_t& shape, std::mt19937& rng, double spacing = 0.01) {
  array<double> a(shape);
  std::vector<std::size_t> order(a.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const double centre = double(a.size()) / 2;
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = (double(order[i]) - centre + 0.5) * spacing;
  return a;
}

inline var64 v64(array<double> a) { return var64(std::move(a)); }

/// Naive direct convolution, float64: x [N,C,H,W], w [O,C/G,KH,KW] -> [N,O,OH,OW].
inline array<double> naive_conv2d(const array<double>& x, const array<double>& w, const array<double>* bias,
                                  std::size_t sh, std::size_t sw, std::size_t ph, std::size_t pw, std::size_t groups) {
  const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], wd = x.shape()[3];
  const std::size_t o = w.shape()[0], cg = w.shape()[1], kh = w.shape()[2], kw = w.shape()[3];
  const std::size_t oh = (h + 2 * ph - kh) / sh + 1, ow = (wd + 2 * pw - kw) / sw + 1;
  const std::size_t og = o / groups;
  (void)c;
  array<double> y(shape_t{n, o, oh, ow});
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t oc = 0; oc < o; ++oc)
      for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
          double acc = bias ? (*bias)(oc) : 0.0;
          const std::size_t g = oc / og;
          for (std::size_t ci = 0; ci < cg; ++ci)
            for (std::size_t a = 0; a < kh; ++a)
              for (std::size_t bb = 0; bb < kw; ++bb) {
                const long ih = long(i * sh + a) - long(ph), iw = long(j * sw + bb) - long(pw);
                if (ih < 0 || iw < 0 || ih >= long(h) || iw >= long(wd)) continue;
                acc += w(oc, ci, a, bb) * x(b, g * cg + ci, std::size_t(ih), std::size_t(iw));
              }
          y(b, oc, i, j) = acc;
        }
  return y;
}

inline double max_abs_diff(const array<double>& a, const array<double>& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a.data()[i] - b.data()[i]));
  return m;
}

/// gradcheck with a readable failure, and gradient_accumulates: the op's backward must add
/// to a gradient that already exists as well as fill a fresh one.
#define NN_GRADCHECK(f, inputs)                                                                    \
  do {                                                                                             \
    const auto gc_result_ = xquant::autograd::gradcheck((f), (inputs));                            \
    CHECK_MESSAGE(gc_result_.ok, gc_result_.first_failure);                                        \
    std::string acc_where_;                                                                        \
    CHECK_MESSAGE(xquant::autograd::gradient_accumulates((f), (inputs), &acc_where_), acc_where_); \
  } while (false)

/// Bit equality of two float arrays (shape and every byte).
template <class T>
bool bit_identical(const array<T>& a, const array<T>& b) {
  auto same_bits = [](T x, T y) { return std::memcmp(&x, &y, sizeof(T)) == 0; };
  return a.shape() == b.shape() && std::equal(a.data(), a.data() + a.size(), b.data(), same_bits);
}

/// Runs body with n threads and restores one thread afterwards, also on failure.
struct threads_guard {
  explicit threads_guard(std::size_t n) { xquant::set_num_threads(n); }
  ~threads_guard() { xquant::set_num_threads(1); }
  threads_guard(const threads_guard&) = delete;
  threads_guard& operator=(const threads_guard&) = delete;
};

/// A checkpoint path in the temp directory (tagged, per process), removed at the end of the
/// scope.
struct temp_file {
  std::filesystem::path path;
  explicit temp_file(const std::string& tag)
      : path(std::filesystem::temp_directory_path() /
             ("xquant_nn_" + tag + "_" + std::to_string(::getpid()) + ".xqckpt")) {}
  ~temp_file() { std::filesystem::remove(path); }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
};

}  // namespace nn_test
