#pragma once
// moving_average_minmax_observer: an exponential moving average of per-batch min/max.
//
// PyTorch's MovingAverageMinMaxObserver (and its per-channel variant), the default
// activation observer of QAT: the first batch sets the range, every later batch moves it
// towards that batch's extremes,
//
//   min <- min + c * (batch_min - min),    max <- max + c * (batch_max - max),
//
// with averaging constant c in (0, 1] (default 0.01; c = 1 tracks the last batch). A
// single outlier batch thus moves the range by a fraction c only, and ranges follow the
// slow drift of activations while the weights train. Arithmetic is float, in exactly
// the order written above, like PyTorch.
//
// freeze() stops the updates (QAT usually freezes observers for the last epochs so
// that the network trains against fixed quantization parameters); a frozen observer's
// observe() returns at once without looking at its argument. reset() forgets the
// statistics but keeps the frozen state.

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "xquant/calib/observer_base.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"

namespace xquant {

template <quant_scheme Scheme>
class moving_average_minmax_observer {
 public:
  using scheme_type = Scheme;

  /// c: the averaging constant, in (0, 1].
  explicit moving_average_minmax_observer(float averaging_constant = 0.01f) : c_(averaging_constant) {
    check(c_ > 0.0f && c_ <= 1.0f,
          "moving_average_minmax_observer: the averaging constant must be in (0, 1], got ",
          averaging_constant);
  }

  void observe(const array<float>& x) {
    if (frozen_) return;
    const shape_t shape = shape_of(x);
    observe(std::span<const float>(x.data(), x.size()), shape);
  }

  void observe(std::span<const float> x, std::span<const std::size_t> shape) {
    if (frozen_) return;
    constexpr int axis = detail::observer_axis<Scheme>;
    const char* who = "moving_average_minmax_observer::observe";
    const detail::batch_stats batch = detail::scan_batch(x, shape, axis, who);
    count_.check_same(batch.layout.channels, shape, axis, who);
    if (ranges_.empty()) {
      ranges_ = batch.ranges;
    } else {
      for (std::size_t c = 0; c < ranges_.size(); ++c) {
        ranges_[c].min = ranges_[c].min + c_ * (batch.ranges[c].min - ranges_[c].min);
        ranges_[c].max = ranges_[c].max + c_ * (batch.ranges[c].max - ranges_[c].max);
      }
    }
    count_.set(ranges_.size());
  }

  /// The averaged [min, max] of each channel.
  std::vector<value_range> ranges() const {
    detail::check_has_data(has_data(), "moving_average_minmax_observer");
    return ranges_;
  }

  quant_params params() const { return choose_params<Scheme>(std::span<const value_range>(ranges())); }

  /// Stop (freeze) or resume (unfreeze) updating the ranges.
  void freeze() { frozen_ = true; }
  void unfreeze() { frozen_ = false; }
  bool frozen() const { return frozen_; }

  float averaging_constant() const { return c_; }
  bool has_data() const { return !ranges_.empty(); }
  std::size_t channels() const { return ranges_.size(); }

  void reset() {
    ranges_.clear();
    count_.reset();
  }

 private:
  float c_;
  bool frozen_ = false;
  std::vector<value_range> ranges_;
  detail::channel_count count_;
};

}  // namespace xquant
