#pragma once
// Helpers shared by the calib/ tests: seeded data sets of known distribution and the
// quantize-dequantize error measured on raw samples (the ground truth the histogram
// based observers approximate).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"
#include "xquant/quant/quantize.hpp"

namespace calib_test {

using xquant::array;
using xquant::shape_t;
using xquant::value_range;

inline array<float> make_array(const std::vector<float>& values, const shape_t& shape) {
  array<float> a(shape);
  std::copy(values.begin(), values.end(), a.begin());
  return a;
}

inline array<float> make_array(const std::vector<float>& values) {
  return make_array(values, {values.size()});
}

inline std::vector<float> gaussian(std::size_t n, double mean, double sd, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> dist(mean, sd);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

inline std::vector<float> uniform(std::size_t n, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

inline std::vector<float> relu(std::vector<float> v) {
  for (float& x : v) x = std::max(x, 0.0f);
  return v;
}

inline std::vector<float> concat(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> out(a);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

inline std::vector<float> slice(const std::vector<float>& v, std::size_t from, std::size_t to) {
  return {v.begin() + static_cast<std::ptrdiff_t>(from), v.begin() + static_cast<std::ptrdiff_t>(to)};
}

/// Mean of (x - dequantize(quantize(x)))^2 over the samples, in double, with the
/// quantizer choose_params<Scheme> derives from r and the library's own quantize.
template <xquant::quant_scheme Scheme>
double fake_quant_mse(std::span<const float> x, value_range r) {
  const auto [scale, zero_point] = xquant::detail::params_for_range<Scheme>(r);
  double sum = 0;
  for (const float v : x) {
    const auto q = xquant::quantize_value<Scheme>(v, scale, zero_point);
    const double d =
        static_cast<double>(v) - static_cast<double>(xquant::dequantize_value(q, scale, zero_point));
    sum += d * d;
  }
  return sum / static_cast<double>(x.size());
}

/// A brute-force search for the symmetric threshold t minimizing fake_quant_mse over
/// [-t, t]: a grid of `points` thresholds over (0, amax], then a grid of `points` over
/// the two coarse cells around the best one.
template <xquant::quant_scheme Scheme>
std::pair<double, double> brute_force_symmetric(std::span<const float> x, int points = 200) {
  double amax = 0;
  for (const float v : x) amax = std::max(amax, std::fabs(static_cast<double>(v)));
  double best_t = amax;
  double best = fake_quant_mse<Scheme>(x, {-static_cast<float>(amax), static_cast<float>(amax)});
  const auto scan = [&](double from, double to) {
    for (int k = 0; k <= points; ++k) {
      const double t = from + (to - from) * k / points;
      if (t <= 0 || t > amax) continue;
      const double e = fake_quant_mse<Scheme>(x, {-static_cast<float>(t), static_cast<float>(t)});
      if (e < best) {
        best = e;
        best_t = t;
      }
    }
  };
  scan(0, amax);
  const double cell = amax / points;
  scan(best_t - cell, best_t + cell);
  return {best_t, best};
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// The message of the exception `f` throws as E, or "" when it throws nothing.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

}  // namespace calib_test
