#pragma once
// histogram: a fixed number of equal-width bins over a range that grows with the data,
// exactly and independently of how the data is split into batches.
//
// Layout. The bin width is a power of two, w = 2^e, and bins are aligned to multiples
// of w: bin j counts the values in [(base + j) * w, (base + j + 1) * w) for an integer
// `base`. cover(lo, hi) grows the covered range (the hull of all cover() calls) and keeps
//   e    = the smallest exponent for which the hull fits into the bins,
//   base = floor(hull.lo / w).
// Both depend on the hull alone.
//
// Rebinning. When the hull no longer fits, e grows by k: aligned bins of width 2^e
// nest exactly in bins of width 2^(e+k), so the count of old bin b simply moves to new
// bin floor(b / 2^k) (2^k old bins merge into one); a lower hull.lo moves `base` by whole
// bins. No count is ever split or interpolated. Hence every count is the exact number of
// values in its bin, and observing batches A then B gives the same histogram as
// observing the concatenation of A and B, in any split and order. (PyTorch's
// HistogramObserver instead redistributes counts proportionally on each range change,
// which smears the histogram and depends on the batch order.)
//
// The price: with e minimal, the hull spans between about half and all of the bins, so
// 2048 bins resolve the data into at least ~1024 bins.
//
// Exactness of the arithmetic: x * 2^-e is exact in double (a power-of-two scaling), and
// e is kept large enough that |x| / w <= 2^52, so floor() gives the exact integer bin.
// A floor of e >= -160 gives constant data (hull of zero width) a finite, tiny width.
//
// The distribution model used by quantile() and the observers: counts are spread
// uniformly inside a bin, and the first and last occupied bins are cut to the hull
// (the data's true min and max), so quantile(0) and quantile(1) are the exact extremes.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "xquant/calib/observer_base.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"

namespace xquant {

/// An occupied bin, as the observers see it: the interval (cut to the covered range)
/// and its count.
struct histogram_bin {
  double lo = 0;
  double hi = 0;
  double count = 0;
};

class histogram {
 public:
  static constexpr std::size_t default_bins = 2048;
  static constexpr std::size_t max_bins = std::size_t{1} << 24;

  explicit histogram(std::size_t bins = default_bins) : counts_(check_bins(bins), 0) {}

  /// Returns `bins`; throws value_error unless 2 <= bins <= max_bins.
  static std::size_t check_bins(std::size_t bins) {
    check(bins >= 2 && bins <= max_bins, "histogram: the number of bins must be in [2, ", max_bins, "], got ",
          bins);
    return bins;
  }

  /// Grows the covered range to include [lo, hi], rebinning exactly (see above).
  void cover(double lo, double hi) {
    constexpr double limit = std::numeric_limits<float>::max();
    check<numeric_error>(
        std::isfinite(lo) && std::isfinite(hi) && std::fabs(lo) <= limit && std::fabs(hi) <= limit,
        "histogram::cover: the range [", lo, ", ", hi, "] is not finite in float");
    check(lo <= hi, "histogram::cover: empty range [", lo, ", ", hi, "]");
    const double new_lo = covered_ ? std::min(lo_, lo) : lo;
    const double new_hi = covered_ ? std::max(hi_, hi) : hi;
    const int e = smallest_exponent(new_lo, new_hi, covered_ ? exponent_ : min_exponent);
    const std::int64_t base = floor_index(new_lo, e);
    if (covered_) regrid(e, base);
    exponent_ = e;
    base_ = base;
    lo_ = new_lo;
    hi_ = new_hi;
    covered_ = true;
  }

  /// Counts f(v[k]) for k < n. Precondition: the values lie in the covered range
  /// (values outside it, which the observers never pass, land in the edge bins).
  template <class Transform>
  void add_covered(const float* v, std::size_t n, Transform f) {
    const double inv_width = std::ldexp(1.0, -exponent_);
    const double base = static_cast<double>(base_);
    const double last = static_cast<double>(counts_.size() - 1);
    for (std::size_t k = 0; k < n; ++k) {
      const double j = std::floor(static_cast<double>(f(v[k])) * inv_width) - base;
      // Written so that even a NaN would land in bin 0 instead of an undefined cast.
      ++counts_[static_cast<std::size_t>(j > 0.0 ? std::min(j, last) : 0.0)];
    }
    total_ += n;
  }
  void add_covered(const float* v, std::size_t n) {
    add_covered(v, n, [](float x) { return x; });
  }

  /// Checks that `values` are finite, covers their range and counts them.
  void add(std::span<const float> values) {
    if (values.empty()) return;
    const std::size_t shape[] = {values.size()};
    const detail::batch_stats stats = detail::scan_batch(values, shape, -1, "histogram::add");
    cover(stats.ranges[0].min, stats.ranges[0].max);
    add_covered(values.data(), values.size());
  }

  void clear() { *this = histogram(counts_.size()); }

  bool empty() const { return total_ == 0; }
  std::size_t bins() const { return counts_.size(); }
  std::uint64_t total() const { return total_; }
  std::span<const std::uint64_t> counts() const { return counts_; }
  /// w = 2^exponent(); meaningful once something is covered.
  int exponent() const { return exponent_; }
  double bin_width() const { return std::ldexp(1.0, exponent_); }
  /// Left edge of bin j (j may be bins(): the right edge of the last bin).
  double edge(std::size_t j) const {
    return std::ldexp(static_cast<double>(base_ + static_cast<std::int64_t>(j)), exponent_);
  }
  /// The covered range: the hull of all cover() calls.
  double covered_min() const { return lo_; }
  double covered_max() const { return hi_; }

  /// Bin j as an interval cut to the covered range.
  histogram_bin bin(std::size_t j) const {
    return {std::max(edge(j), lo_), std::min(edge(j + 1), hi_), static_cast<double>(counts_[j])};
  }

  /// The occupied bins in increasing order.
  std::vector<histogram_bin> occupied_bins() const {
    std::vector<histogram_bin> out;
    for (std::size_t j = 0; j < counts_.size(); ++j) {
      if (counts_[j] != 0) out.push_back(bin(j));
    }
    return out;
  }

  /// The value below which a fraction q of the counts lies, q in [0, 1], with counts
  /// uniform inside each (cut) bin. The (q * total)-th smallest value lies in the same
  /// bin, so the result is within one bin width of it.
  double quantile(double q) const {
    check(q >= 0.0 && q <= 1.0, "histogram::quantile: q must be in [0, 1], got ", q);
    check(!empty(), "histogram::quantile: the histogram is empty");
    const double target = q * static_cast<double>(total_);
    double below = 0;
    std::size_t last = 0;
    for (std::size_t j = 0; j < counts_.size(); ++j) {
      if (counts_[j] == 0) continue;
      last = j;
      const double n = static_cast<double>(counts_[j]);
      if (below + n >= target) {
        const histogram_bin b = bin(j);
        return b.lo + (b.hi - b.lo) * std::clamp((target - below) / n, 0.0, 1.0);
      }
      below += n;
    }
    return bin(last).hi;  // only reached through rounding of q * total
  }

  friend bool operator==(const histogram&, const histogram&) = default;

 private:
  static constexpr int min_exponent = -160;
  static constexpr double index_limit = 4503599627370496.0;  // 2^52

  static std::int64_t floor_index(double x, int e) {
    return static_cast<std::int64_t>(std::floor(std::ldexp(x, -e)));
  }

  // Does [lo, hi] fit into the bins at width 2^e? Monotone in e: if it fits at e, it fits
  // at e + 1 (k consecutive aligned bins meet at most ceil(k / 2) + 1 <= k coarser ones).
  bool fits(int e, double lo, double hi) const {
    if (std::ldexp(std::max(std::fabs(lo), std::fabs(hi)), -e) > index_limit) return false;
    const double used = std::floor(std::ldexp(hi, -e)) - std::floor(std::ldexp(lo, -e)) + 1.0;
    return used <= static_cast<double>(counts_.size());
  }

  // The smallest e >= start that fits. The search starts at lower bounds that cannot
  // fit (2^e <= span / bins; |x| / 2^e > 2^52), so it takes a step or two.
  int smallest_exponent(double lo, double hi, int start) const {
    int e = std::max(start, min_exponent);
    if (hi > lo) e = std::max(e, std::ilogb((hi - lo) / static_cast<double>(counts_.size())));
    const double amax = std::max(std::fabs(lo), std::fabs(hi));
    if (amax > 0) e = std::max(e, std::ilogb(amax) - 53);
    while (!fits(e, lo, hi)) ++e;
    return e;
  }

  // floor(a / 2^shift) for shift >= 0 (>> on a negative int64 is an arithmetic shift in C++20).
  static std::int64_t floor_shift(std::int64_t a, int shift) {
    if (shift >= 63) return a < 0 ? -1 : 0;
    return a >> shift;
  }

  // Moves the counts to width 2^e and origin `base`: exact, see the header comment.
  void regrid(int e, std::int64_t base) {
    if (e == exponent_ && base == base_) return;
    std::vector<std::uint64_t> moved(counts_.size(), 0);
    const auto last = static_cast<std::int64_t>(counts_.size()) - 1;
    for (std::size_t j = 0; j < counts_.size(); ++j) {
      if (counts_[j] == 0) continue;
      const std::int64_t to = floor_shift(base_ + static_cast<std::int64_t>(j), e - exponent_) - base;
      moved[static_cast<std::size_t>(std::clamp<std::int64_t>(to, 0, last))] += counts_[j];
    }
    counts_.swap(moved);
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  int exponent_ = min_exponent;
  std::int64_t base_ = 0;
  double lo_ = 0;
  double hi_ = 0;
  bool covered_ = false;
};

namespace detail {

/// What a histogram observer bins: the values themselves (asymmetric schemes) or their
/// magnitudes |x| (symmetric schemes and entropy calibration, which choose a threshold t
/// for the range [-t, t]).
enum class binned_values { signed_values, magnitudes };

/// One histogram per channel plus each channel's exact min/max and count of exact zeros:
/// the state every histogram-based observer shares. Not a template, so it is compiled
/// once.
class channel_histograms {
 public:
  channel_histograms(std::size_t bins, binned_values kind) : bins_(bins), kind_(kind) {
    histogram::check_bins(bins);  // now, not at the first observe()
  }

  void observe(std::span<const float> x, std::span<const std::size_t> shape, int axis, const char* who) {
    const batch_stats batch = scan_batch(x, shape, axis, who);
    count_.check_same(batch.layout.channels, shape, axis, who);
    if (hists_.empty()) {
      hists_.assign(batch.layout.channels, histogram(bins_));
      seen_.assign(batch.layout.channels, value_range{});
      zeros_.assign(batch.layout.channels, 0);
    }
    for (std::size_t c = 0; c < hists_.size(); ++c) {
      const value_range r = batch.ranges[c];
      seen_[c].include(r);
      if (kind_ == binned_values::magnitudes) {
        hists_[c].cover(
            0.0, std::max(std::fabs(static_cast<double>(r.min)), std::fabs(static_cast<double>(r.max))));
      } else {
        hists_[c].cover(r.min, r.max);
      }
    }
    for_each_channel_run(x.data(), batch.layout, [&](std::size_t c, const float* p, std::size_t n) {
      zeros_[c] += static_cast<std::uint64_t>(std::count(p, p + n, 0.0f));
      if (kind_ == binned_values::magnitudes) {
        hists_[c].add_covered(p, n, [](float v) { return std::fabs(v); });
      } else {
        hists_[c].add_covered(p, n);
      }
    });
    count_.set(hists_.size());
  }

  bool has_data() const { return !hists_.empty(); }
  std::size_t channels() const { return hists_.size(); }
  std::size_t bins() const { return bins_; }
  binned_values kind() const { return kind_; }
  const histogram& at(std::size_t c) const {
    check<shape_error>(c < hists_.size(), "observer has ", hists_.size(), " channels, asked for channel ", c);
    return hists_[c];
  }
  /// The exact min and max of channel c.
  value_range seen(std::size_t c) const {
    check<shape_error>(c < seen_.size(), "observer has ", seen_.size(), " channels, asked for channel ", c);
    return seen_[c];
  }

  /// How many values of channel c were exactly 0 (or -0).
  std::uint64_t zeros(std::size_t c) const {
    check<shape_error>(c < zeros_.size(), "observer has ", zeros_.size(), " channels, asked for channel ", c);
    return zeros_[c];
  }

  void reset() {
    hists_.clear();
    seen_.clear();
    zeros_.clear();
    count_.reset();
  }

 private:
  std::size_t bins_;
  binned_values kind_;
  std::vector<histogram> hists_;
  std::vector<value_range> seen_;
  std::vector<std::uint64_t> zeros_;
  channel_count count_;
};

}  // namespace detail
}  // namespace xquant
