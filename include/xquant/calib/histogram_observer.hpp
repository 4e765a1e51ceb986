#pragma once
// histogram_observer: percentile clipping from a histogram of the observed values.
//
// Percentile calibration (TensorRT "percentile", NVIDIA pytorch-quantization
// HistogramCalibrator with method="percentile"; Wu et al. 2020, "Integer Quantization
// for Deep Learning Inference", §4.1): clip away a small fraction of the most extreme
// values, so that a few outliers do not coarsen the scale for everything else.
//
// Definition, for a percentile p in (0, 100] (default 99.99):
//   symmetric scheme:  t = the p-th percentile of |x|; the range is [-t, t].
//   asymmetric scheme: the range is [the (100 - p)/2-th, the (100 + p)/2-th percentile
//                      of x], e.g. p = 99.99 keeps [0.005 %, 99.995 %].
// A percentile of the histogram (histogram::quantile) treats counts as uniform inside a
// bin, so it is within one bin width of the corresponding sorted-data order statistic;
// p = 100 gives exactly [min, max] ([-max|x|, max|x|] for symmetric schemes). Ranges
// never extend beyond the observed data.
//
// Each channel has its own histogram (histogram.hpp): a fixed number of bins (default
// 2048) over a range that grows exactly with the data, so the result does not depend on
// how the calibration data is split into observe() calls.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "xquant/calib/histogram.hpp"
#include "xquant/calib/observer_base.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"

namespace xquant {

template <quant_scheme Scheme>
class histogram_observer {
 public:
  using scheme_type = Scheme;

  explicit histogram_observer(double percentile = 99.99, std::size_t bins = histogram::default_bins)
      : percentile_(percentile),
        hists_(bins, Scheme::is_symmetric ? detail::binned_values::magnitudes
                                          : detail::binned_values::signed_values) {
    check(percentile > 0.0 && percentile <= 100.0,
          "histogram_observer: the percentile must be in (0, 100], got ", percentile);
  }

  void observe(const array<float>& x) {
    const shape_t shape = shape_of(x);
    observe(std::span<const float>(x.data(), x.size()), shape);
  }

  void observe(std::span<const float> x, std::span<const std::size_t> shape) {
    hists_.observe(x, shape, detail::observer_axis<Scheme>, "histogram_observer::observe");
  }

  /// The percentile clipping range of each channel.
  std::vector<value_range> ranges() const {
    detail::check_has_data(has_data(), "histogram_observer");
    std::vector<value_range> out(hists_.channels());
    for (std::size_t c = 0; c < out.size(); ++c) out[c] = channel_range(c);
    return out;
  }

  quant_params params() const { return choose_params<Scheme>(std::span<const value_range>(ranges())); }

  double percentile() const { return percentile_; }
  bool has_data() const { return hists_.has_data(); }
  std::size_t channels() const { return hists_.channels(); }
  /// Channel c's histogram: of |x| for symmetric schemes, of x otherwise.
  const histogram& channel_histogram(std::size_t c) const { return hists_.at(c); }
  /// The exact [min, max] of channel c.
  value_range observed_range(std::size_t c) const { return hists_.seen(c); }

  void reset() { hists_.reset(); }

 private:
  value_range channel_range(std::size_t c) const {
    const histogram& h = hists_.at(c);
    const value_range seen = hists_.seen(c);
    const double p = percentile_ / 100.0;
    if constexpr (Scheme::is_symmetric) {
      const float amax = std::max(std::fabs(seen.min), std::fabs(seen.max));
      const float t = std::min(static_cast<float>(h.quantile(p)), amax);
      return {-t, t};
    } else {
      const double tail = (1.0 - p) / 2.0;
      const auto lo = static_cast<float>(h.quantile(tail));
      const auto hi = static_cast<float>(h.quantile(1.0 - tail));
      return {std::clamp(lo, seen.min, seen.max), std::clamp(hi, seen.min, seen.max)};
    }
  }

  double percentile_;
  detail::channel_histograms hists_;
};

}  // namespace xquant
