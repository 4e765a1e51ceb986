#pragma once
// mse_observer: the clipping range that minimizes the expected quantization MSE.
//
// Clipping trades two errors (Banner et al. 2019, "Post training 4-bit quantization of
// convolutional networks for rapid-deployment"; Sung et al. 2015): a narrower range
// gives a finer step, hence less rounding error for the bulk of the data, but clips the
// tails. The observer histograms the data (histogram.hpp) and searches the range whose
// quantizer - exactly the one choose_params<Scheme> derives from it: this Scheme's
// levels qmin..qmax, scale, zero-point nudging, power-of-two scale - has the least
// expected squared error
//
//   E(range) = sum over bins of count / width * integral over the bin of (x - Q(x))^2 dx,
//
// i.e. counts uniform inside each bin (the first and last occupied bins cut to the
// data's min and max). The integral is exact and O(1) per bin: below the lowest level
// and above the highest, (x - level)^2 integrates to a cubic; between them, the rounding
// error is periodic with the step s, so whole periods contribute s^3/12 each plus two
// partial periods (detail::rounding_error_integral). A candidate thus costs O(bins),
// independently of the number of levels. All sums are in double.
//
// Search space (resolution R = the number of bins, default 2048):
//   symmetric:  t = max|x| * (R - i) / R, i in [0, R); range [-t, t]. The histogram is
//               of |x| and the error is measured against the positive levels 0..qmax*s
//               (for signed_bits the extra negative level qmin = -qmax - 1 is ignored,
//               which overestimates clipping error of negative values slightly).
//               1-D: every 16th candidate (R/128), then every candidate within one
//               coarse step of the best.
//   asymmetric: lo = min(min_x, 0) * (R - i) / R, hi = max(max_x, 0) * (R - k) / R, both
//               ends shrink independently. 2-D: a 32 x 32 coarse grid, then a pattern
//               search (8 neighbours at step d, halving d down to one candidate).
// Coarse-to-fine assumes E is roughly unimodal at the coarse scale, which holds for
// the unimodal data of calibration; fine-scale wiggles (from the alignment of levels
// and bins) are handled by the exhaustive 1-D refinement.
// Ties go to the wider range. The reported range never extends beyond the data.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "xquant/calib/histogram.hpp"
#include "xquant/calib/observer_base.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"

namespace xquant {

namespace detail {

/// The levels of a uniform quantizer: lo, lo + step, ..., hi. Values below lo clip to
/// lo, values above hi clip to hi, values in between round to the nearest level.
struct level_grid {
  double lo = 0;
  double hi = 0;
  double step = 1;
};

/// The level grid of the quantizer choose_params<Scheme> derives from `range`; for
/// magnitudes (symmetric schemes, values |x|) only the levels 0..qmax*scale.
template <quant_scheme Scheme>
level_grid levels_for_range(value_range range, bool magnitudes) {
  const auto [scale, zero_point] = params_for_range<Scheme>(range);
  const double s = scale;
  if (magnitudes) return {0.0, s * Scheme::qmax, s};
  return {s * (Scheme::qmin - zero_point), s * (Scheme::qmax - zero_point), s};
}

/// integral over [u, v] of (x - y)^2 dx, written as (v - u)(a^2 + ab + b^2) / 3 to avoid
/// the cancellation of a difference of cubes.
inline double clip_error_integral(double y, double u, double v) {
  const double a = v - y;
  const double b = u - y;
  return (v - u) * (a * a + a * b + b * b) / 3.0;
}

/// integral over [0, phi] of (t - nearest multiple of s)^2 dt, for phi in [0, s].
inline double partial_period_error(double phi, double s) {
  phi = std::clamp(phi, 0.0, s);
  if (phi <= s / 2) return phi * phi * phi / 3.0;
  const double d = phi - s;  // in [-s/2, 0]: distance to the upper level
  return s * s * s / 24.0 + (d * d * d + s * s * s / 8.0) / 3.0;
}

/// integral over [u, v] of the rounding error (x - Q(x))^2 dx, lo <= u <= v <= hi.
inline double rounding_error_integral(const level_grid& g, double u, double v) {
  const double s = g.step;
  const double ku = std::floor((u - g.lo) / s);
  const double kv = std::floor((v - g.lo) / s);
  return (kv - ku) * (s * s * s / 12.0) + partial_period_error(v - g.lo - kv * s, s) -
         partial_period_error(u - g.lo - ku * s, s);
}

/// (x - Q(x))^2 for a single value.
inline double point_error(const level_grid& g, double x) {
  if (x <= g.lo) return (x - g.lo) * (x - g.lo);
  if (x >= g.hi) return (x - g.hi) * (x - g.hi);
  const double d = x - g.lo;
  const double e = d - std::nearbyint(d / g.step) * g.step;
  return e * e;
}

/// Expected squared error (summed over the counts) of quantizing the histogram's mass.
inline double expected_squared_error(std::span<const histogram_bin> bins, const level_grid& g) {
  double total = 0;
  for (const histogram_bin& b : bins) {
    const double width = b.hi - b.lo;
    // A bin much narrower than the step (e.g. all its values equal) acts as a point.
    if (!(width > 1e-3 * g.step)) {
      total += b.count * point_error(g, 0.5 * (b.lo + b.hi));
      continue;
    }
    double integral = 0;
    if (b.lo < g.lo) integral += clip_error_integral(g.lo, b.lo, std::min(b.hi, g.lo));
    const double u = std::max(b.lo, g.lo);
    const double v = std::min(b.hi, g.hi);
    if (u < v) integral += rounding_error_integral(g, u, v);
    if (b.hi > g.hi) integral += clip_error_integral(g.hi, std::max(b.lo, g.hi), b.hi);
    total += b.count / width * integral;
  }
  return total;
}

/// argmin of f over i in [0, n): every stride-th i, then every i within one stride of
/// the best. Ties go to the smaller i.
template <class F>
std::size_t coarse_to_fine_1d(std::size_t n, F&& f) {
  const std::size_t stride = std::max<std::size_t>(1, n / 128);
  std::size_t best = 0;
  double best_err = f(std::size_t{0});
  for (std::size_t i = stride; i < n; i += stride) {
    const double e = f(i);
    if (e < best_err) {
      best = i;
      best_err = e;
    }
  }
  const std::size_t from = best >= stride ? best - stride + 1 : 0;
  const std::size_t to = std::min(n, best + stride);
  for (std::size_t i = from; i < to; ++i) {
    const double e = f(i);
    if (e < best_err || (e == best_err && i < best)) {
      best = i;
      best_err = e;
    }
  }
  return best;
}

/// argmin of f over (i, k) in [0, ni) x [0, nk): a coarse grid of about 32 x 32, then a
/// pattern search over the 8 neighbours at a step that halves down to 1.
template <class F>
std::pair<std::size_t, std::size_t> coarse_to_fine_2d(std::size_t ni, std::size_t nk, F&& f) {
  const std::size_t si = std::max<std::size_t>(1, ni / 32);
  const std::size_t sk = std::max<std::size_t>(1, nk / 32);
  std::size_t bi = 0, bk = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < ni; i += si) {
    for (std::size_t k = 0; k < nk; k += sk) {
      const double e = f(i, k);
      if (e < best_err) {
        bi = i;
        bk = k;
        best_err = e;
      }
    }
  }
  auto step_i = static_cast<std::int64_t>(si);
  auto step_k = static_cast<std::int64_t>(sk);
  for (;;) {
    bool moved = false;
    for (std::int64_t di = -1; di <= 1; ++di) {
      for (std::int64_t dk = -1; dk <= 1; ++dk) {
        const std::int64_t i = static_cast<std::int64_t>(bi) + di * step_i;
        const std::int64_t k = static_cast<std::int64_t>(bk) + dk * step_k;
        if ((di == 0 && dk == 0) || i < 0 || k < 0 || i >= static_cast<std::int64_t>(ni) ||
            k >= static_cast<std::int64_t>(nk)) {
          continue;
        }
        const double e = f(static_cast<std::size_t>(i), static_cast<std::size_t>(k));
        if (e < best_err) {
          bi = static_cast<std::size_t>(i);
          bk = static_cast<std::size_t>(k);
          best_err = e;
          moved = true;
        }
      }
    }
    if (moved) continue;
    if (step_i == 1 && step_k == 1) break;
    step_i = std::max<std::int64_t>(1, step_i / 2);
    step_k = std::max<std::int64_t>(1, step_k / 2);
  }
  return {bi, bk};
}

/// x * (n - i) / n in double, rounded to float: candidate i of a shrinking bound.
inline float shrunk(double x, std::size_t i, std::size_t n) {
  return static_cast<float>(x * static_cast<double>(n - i) / static_cast<double>(n));
}

}  // namespace detail

template <quant_scheme Scheme>
class mse_observer {
 public:
  using scheme_type = Scheme;

  explicit mse_observer(std::size_t bins = histogram::default_bins)
      : hists_(bins, Scheme::is_symmetric ? detail::binned_values::magnitudes
                                          : detail::binned_values::signed_values) {}

  void observe(const array<float>& x) {
    const shape_t shape = shape_of(x);
    observe(std::span<const float>(x.data(), x.size()), shape);
  }

  /// who: the name in error messages (an observer built on this one passes its own).
  void observe(std::span<const float> x, std::span<const std::size_t> shape,
               const char* who = "mse_observer::observe") {
    hists_.observe(x, shape, detail::observer_axis<Scheme>, who);
  }

  /// The MSE-optimal clipping range of each channel.
  std::vector<value_range> ranges() const {
    detail::check_has_data(has_data(), "mse_observer");
    std::vector<value_range> out(hists_.channels());
    for (std::size_t c = 0; c < out.size(); ++c) out[c] = channel_range(c);
    return out;
  }

  quant_params params() const { return choose_params<Scheme>(std::span<const value_range>(ranges())); }

  /// The expected squared error per value that the observer predicts for quantizing
  /// channel c with the range `r` (what the search minimizes).
  double expected_mse(std::size_t c, value_range r) const {
    const histogram& h = hists_.at(c);
    check(!h.empty(), "mse_observer: no data observed yet");
    const std::vector<histogram_bin> bins = h.occupied_bins();
    return detail::expected_squared_error(bins, detail::levels_for_range<Scheme>(r, Scheme::is_symmetric)) /
           static_cast<double>(h.total());
  }

  bool has_data() const { return hists_.has_data(); }
  std::size_t channels() const { return hists_.channels(); }
  const histogram& channel_histogram(std::size_t c) const { return hists_.at(c); }
  value_range observed_range(std::size_t c) const { return hists_.seen(c); }

  void reset() { hists_.reset(); }

 private:
  value_range channel_range(std::size_t c) const {
    const std::vector<histogram_bin> bins = hists_.at(c).occupied_bins();
    const value_range seen = hists_.seen(c);
    const std::size_t n = hists_.bins();
    if constexpr (Scheme::is_symmetric) {
      const double amax = std::max(std::fabs(seen.min), std::fabs(seen.max));
      if (amax == 0) return {0.0f, 0.0f};
      const auto error = [&](std::size_t i) {
        const float t = detail::shrunk(amax, i, n);
        return detail::expected_squared_error(bins, detail::levels_for_range<Scheme>({-t, t}, true));
      };
      const float t = detail::shrunk(amax, detail::coarse_to_fine_1d(n, error), n);
      return {-t, t};
    } else {
      const double lo = std::min(seen.min, 0.0f);
      const double hi = std::max(seen.max, 0.0f);
      if (lo == 0 && hi == 0) return {0.0f, 0.0f};
      const auto error = [&](std::size_t i, std::size_t k) {
        const value_range r{detail::shrunk(lo, i, n), detail::shrunk(hi, k, n)};
        return detail::expected_squared_error(bins, detail::levels_for_range<Scheme>(r, false));
      };
      const auto [i, k] = detail::coarse_to_fine_2d(lo < 0 ? n : 1, hi > 0 ? n : 1, error);
      return detail::clip_to_seen({detail::shrunk(lo, i, n), detail::shrunk(hi, k, n)}, seen);
    }
  }

  detail::channel_histograms hists_;
};

}  // namespace xquant
