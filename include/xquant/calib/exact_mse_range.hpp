#pragma once
// exact_mse_ranges: the MSE-optimal clipping range of each channel, measured on the values
// themselves rather than on a histogram. Meant for weights (mse_clipping weight schemes):
// a channel holds tens to thousands of values, too few for a histogram to describe, and
// re-running the search at every QAT step must stay cheap.
//
// Candidates shrink the observed [min, max] of a channel by one common factor,
// r = 1 - k/64 for k = 0..40 (down to 0.375 of the range); each one is judged by the exact
// squared error of quantizing every value of the channel with the parameters
// choose_params<Scheme> derives from the shrunk range. The search evaluates every 4th k,
// then the 3 neighbours on each side of the best: 17 error passes per channel.
// Ties go to the wider range, so data that needs no clipping (all values equal, or
// uniform on few levels) keeps its min/max range.
//
// Rounding inside the error pass is round-half-even for every scheme: the choice of a
// range does not need the scheme's tie rule, and the fixed rule keeps the pass branch-free.

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "xquant/calib/observer_base.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"

namespace xquant {

namespace detail {

/// Sum over the runs of (x - Q(x))^2 for the quantizer of `range` (choose_params<Scheme>).
template <quant_scheme Scheme>
double quantization_sse(std::span<const std::span<const float>> runs, value_range range) {
  const auto [scale, zero_point] = params_for_range<Scheme>(range);
  const float inv = 1.0f / scale;
  const float lo = static_cast<float>(Scheme::qmin - zero_point);
  const float hi = static_cast<float>(Scheme::qmax - zero_point);
  // Adding and subtracting 1.5 * 2^23 rounds a float of magnitude < 2^22 to an integer,
  // half to even; |v| <= 2^16 here after the clamp.
  constexpr float round_magic = 12582912.0f;
  double sum = 0;
  for (std::span<const float> run : runs) {
    float partial = 0;
    for (float x : run) {
      const float v = std::clamp(x * inv, lo, hi);
      const float e = x - ((v + round_magic) - round_magic) * scale;
      partial += e * e;
    }
    sum += partial;
  }
  return sum;
}

/// The best of the candidate ranges r * [min, max] (see the header comment).
template <quant_scheme Scheme>
value_range best_shrunk_range(std::span<const std::span<const float>> runs, value_range seen) {
  constexpr int steps = 64, last = 40, coarse = 4;
  const auto candidate = [&](int k) {
    const double r = 1.0 - static_cast<double>(k) / steps;
    return value_range{static_cast<float>(seen.min * r), static_cast<float>(seen.max * r)};
  };
  int best = 0;
  double best_error = quantization_sse<Scheme>(runs, candidate(0));
  const auto consider = [&](int k) {
    const double e = quantization_sse<Scheme>(runs, candidate(k));
    if (e < best_error || (e == best_error && k < best)) {
      best_error = e;
      best = k;
    }
  };
  for (int k = coarse; k <= last; k += coarse) consider(k);
  const int centre = best;
  for (int k = std::max(0, centre - coarse + 1); k <= std::min(last, centre + coarse - 1); ++k) {
    if (k != centre) consider(k);
  }
  return candidate(best);
}

}  // namespace detail

/// Per channel (one for per_tensor schemes, the size of the scheme's axis for per_axis),
/// the MSE-optimal clipping range of the values in x, which has the given shape. Errors
/// as the observers': empty data, a shape that does not match, a NaN or infinity.
template <quant_scheme Scheme>
std::vector<value_range> exact_mse_ranges(std::span<const float> x, std::span<const std::size_t> shape) {
  const detail::batch_stats stats = detail::scan_batch(x, shape, detail::observer_axis<Scheme>, "exact_mse_ranges");
  std::vector<std::vector<std::span<const float>>> runs(stats.layout.channels);
  detail::for_each_channel_run(x.data(), stats.layout, [&](std::size_t c, const float* p, std::size_t n) {
    runs[c].emplace_back(p, n);
  });
  std::vector<value_range> ranges(stats.layout.channels);
  for (std::size_t c = 0; c < ranges.size(); ++c) {
    ranges[c] = detail::best_shrunk_range<Scheme>(runs[c], stats.ranges[c]);
  }
  return ranges;
}

template <quant_scheme Scheme>
std::vector<value_range> exact_mse_ranges(const array<float>& x) {
  const shape_t shape = shape_of(x);
  return exact_mse_ranges<Scheme>(std::span<const float>(x.data(), x.size()), shape);
}

}  // namespace xquant
