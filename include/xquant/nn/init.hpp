#pragma once
// Seeded parameter initialisation, as torch.nn.init.
//
// Every function draws from a std::mt19937 the caller passes, so a model initialised
// from one seed is the same on every run. The distributions are computed here from the
// generator's raw 32-bit output (53-bit uniforms, Box-Muller normals) rather than with
// std::uniform_real_distribution / std::normal_distribution, whose algorithms differ
// between standard libraries: the same seed gives the same weights with libstdc++ and
// libc++.
//
// Fans of a weight [out, in, k...]: fan_in = in * prod(k), fan_out = out * prod(k).
//   kaiming_normal:  N(0, std^2),   std   = gain / sqrt(fan),  gain = sqrt(2) for ReLU
//   kaiming_uniform: U(-b, b),      b     = gain * sqrt(3 / fan), gain = sqrt(2 / (1 + a^2))
// PyTorch's default for Conv2d / Linear weights is kaiming_uniform with a = sqrt(5), which
// is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); their biases are U(-1/sqrt(fan_in), 1/sqrt(fan_in))
// too (bias_uniform).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <random>
#include <span>

#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"

namespace xquant::nn::init {

enum class fan_mode { fan_in, fan_out };

/// The gain PyTorch's calculate_gain("relu") returns.
inline constexpr double relu_gain = std::numbers::sqrt2;

struct fans {
  std::size_t in = 0, out = 0;
};

/// fan_in and fan_out of a weight of rank >= 2 ([out, in, kernel...]).
inline fans compute_fans(std::span<const std::size_t> shape) {
  check<shape_error>(shape.size() >= 2, "init: fan_in and fan_out need a weight of rank >= 2, got shape ",
                     shape_string(shape));
  std::size_t receptive = 1;
  for (std::size_t d = 2; d < shape.size(); ++d) receptive *= shape[d];
  return {shape[1] * receptive, shape[0] * receptive};
}

/// A uniform double in [0, 1) with 53 random bits (two 32-bit draws).
inline double uniform01(std::mt19937& rng) {
  const std::uint64_t a = rng() >> 5, b = rng() >> 6;  // 27 + 26 bits
  return (double(a) * 67108864.0 + double(b)) * (1.0 / 9007199254740992.0);
}

/// A standard normal by Box-Muller (one value per two uniforms).
inline double standard_normal(std::mt19937& rng) {
  const double u1 = 1.0 - uniform01(rng);  // (0, 1]: log is finite
  const double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

template <class T>
void uniform(array<T>& a, double lo, double hi, std::mt19937& rng) {
  for (auto& v : a) v = static_cast<T>(lo + (hi - lo) * uniform01(rng));
}

template <class T>
void normal(array<T>& a, double mean, double std, std::mt19937& rng) {
  for (auto& v : a) v = static_cast<T>(mean + std * standard_normal(rng));
}

template <class T>
void constant(array<T>& a, T value) {
  std::fill(a.begin(), a.end(), value);
}
template <class T>
void zeros(array<T>& a) {
  constant(a, T(0));
}
template <class T>
void ones(array<T>& a) {
  constant(a, T(1));
}

inline std::size_t fan_of(std::span<const std::size_t> shape, fan_mode mode) {
  const fans f = compute_fans(shape);
  const std::size_t fan = mode == fan_mode::fan_in ? f.in : f.out;
  check<value_error>(fan > 0, "init: the weight of shape ", shape_string(shape), " has a fan of 0");
  return fan;
}

/// N(0, (gain / sqrt(fan))^2); the default gain is ReLU's, sqrt(2) (He et al.).
template <class T>
void kaiming_normal(array<T>& w, std::mt19937& rng, fan_mode mode = fan_mode::fan_in, double gain = relu_gain) {
  const shape_t shape = shape_of(w);
  normal(w, 0.0, gain / std::sqrt(double(fan_of(shape, mode))), rng);
}

/// U(-b, b), b = sqrt(2 / (1 + a^2)) * sqrt(3 / fan). a = sqrt(5) (the default) is PyTorch's
/// default Conv2d / Linear weight init, b = 1 / sqrt(fan_in).
template <class T>
void kaiming_uniform(array<T>& w, std::mt19937& rng, double a = std::sqrt(5.0), fan_mode mode = fan_mode::fan_in) {
  const shape_t shape = shape_of(w);
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = gain * std::sqrt(3.0 / double(fan_of(shape, mode)));
  uniform(w, -bound, bound, rng);
}

/// PyTorch's default bias init for Conv2d / Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
template <class T>
void bias_uniform(array<T>& b, std::size_t fan_in, std::mt19937& rng) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
  uniform(b, -bound, bound, rng);
}

}  // namespace xquant::nn::init
