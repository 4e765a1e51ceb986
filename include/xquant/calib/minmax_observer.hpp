#pragma once
// minmax_observer: the running minimum and maximum of everything observed.
//
// The simplest calibration rule (PyTorch MinMaxObserver / PerChannelMinMaxObserver,
// TensorRT "max" calibration): the range is exactly the data's range, so nothing is
// ever clipped, at the price of a coarse scale when a few outliers stretch the range.
// It is the usual choice for weights (per_axis<0>), whose range is known exactly.
// The result does not depend on how the data is split into observe() calls.

#include <cstddef>
#include <span>
#include <vector>

#include "xquant/calib/observer_base.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"

namespace xquant {

template <quant_scheme Scheme>
class minmax_observer {
 public:
  using scheme_type = Scheme;

  /// Widens each channel's range to include x (shape: any; per_axis<A>: A < rank and
  /// the channel count of the first call).
  void observe(const array<float>& x) {
    const shape_t shape = shape_of(x);
    observe(std::span<const float>(x.data(), x.size()), shape);
  }

  /// The same for a raw row-major buffer of `shape`.
  void observe(std::span<const float> x, std::span<const std::size_t> shape) {
    constexpr int axis = detail::observer_axis<Scheme>;
    const detail::batch_stats batch = detail::scan_batch(x, shape, axis, "minmax_observer::observe");
    count_.check_same(batch.layout.channels, shape, axis, "minmax_observer::observe");
    if (ranges_.empty()) ranges_.resize(batch.ranges.size());
    for (std::size_t c = 0; c < ranges_.size(); ++c) ranges_[c].include(batch.ranges[c]);
    count_.set(ranges_.size());
  }

  /// [min, max] of each channel (one element for per_tensor).
  std::vector<value_range> ranges() const {
    detail::check_has_data(has_data(), "minmax_observer");
    return ranges_;
  }

  quant_params params() const { return choose_params<Scheme>(std::span<const value_range>(ranges())); }

  bool has_data() const { return !ranges_.empty(); }
  std::size_t channels() const { return ranges_.size(); }

  void reset() {
    ranges_.clear();
    count_.reset();
  }

 private:
  std::vector<value_range> ranges_;
  detail::channel_count count_;
};

}  // namespace xquant
