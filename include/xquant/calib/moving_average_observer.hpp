#pragma once
// moving_average_observer: an exponential moving average of per-batch ranges.
//
// PyTorch's MovingAverageMinMaxObserver (and its per-channel variant), the default
// activation observer of QAT, is moving_average_minmax_observer: the first batch sets the
// range, every later batch moves it towards that batch's extremes,
//
//   min <- min + c * (batch_min - min),    max <- max + c * (batch_max - max),
//
// with averaging constant c in (0, 1] (default 0.01; c = 1 tracks the last batch). A
// single outlier batch thus moves the range by a fraction c only, and ranges follow the
// slow drift of activations while the weights train. Arithmetic is float, in exactly
// the order written above, like PyTorch.
//
// moving_average_mse_observer averages, in the same way, each batch's MSE-optimal
// clipping range (mse_observer over a 512-bin histogram of the batch) instead of its
// min/max: the observer of mse_clipping activation schemes. At 4 bits the min/max range
// spends most of its 16 levels on rare large activations; clipping them gives the bulk
// a finer step (resnet W4A4 QAT: 90.15 % -> 91.30 % together with mse_clipping weights).
//
// freeze() stops the updates (QAT usually freezes observers for the last epochs so
// that the network trains against fixed quantization parameters); a frozen observer's
// observe() returns at once without looking at its argument. reset() forgets the
// statistics but keeps the frozen state.

#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "xquant/calib/mse_observer.hpp"
#include "xquant/calib/observer_base.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"

namespace xquant {

namespace detail {

/// Per-batch ranges of moving_average_minmax_observer: the batch's min/max per channel.
struct batch_min_max {
  template <quant_scheme Scheme>
  static std::vector<value_range> ranges(std::span<const float> x, std::span<const std::size_t> shape,
                                         const char* who) {
    return scan_batch(x, shape, observer_axis<Scheme>, who).ranges;
  }
};

/// Per-batch ranges of moving_average_mse_observer: the batch's MSE-optimal range.
struct batch_mse {
  static constexpr std::size_t bins = 512;
  template <quant_scheme Scheme>
  static std::vector<value_range> ranges(std::span<const float> x, std::span<const std::size_t> shape,
                                         const char* who) {
    mse_observer<Scheme> batch(bins);
    batch.observe(x, shape, who);  // validates x (one scan) with this observer's name
    return batch.ranges();
  }
};

}  // namespace detail

template <quant_scheme Scheme, class BatchRanges>
class moving_average_observer {
 public:
  using scheme_type = Scheme;

  /// c: the averaging constant, in (0, 1].
  explicit moving_average_observer(float averaging_constant = 0.01f) : c_(averaging_constant) {
    check(c_ > 0.0f && c_ <= 1.0f,
          "moving_average_observer: the averaging constant must be in (0, 1], got ",
          averaging_constant);
  }

  void observe(const array<float>& x) {
    if (frozen_) return;
    const shape_t shape = shape_of(x);
    observe(std::span<const float>(x.data(), x.size()), shape);
  }

  void observe(std::span<const float> x, std::span<const std::size_t> shape) {
    if (frozen_) return;
    const char* who = "moving_average_observer::observe";
    const std::vector<value_range> batch = BatchRanges::template ranges<Scheme>(x, shape, who);
    count_.check_same(batch.size(), shape, detail::observer_axis<Scheme>, who);
    if (ranges_.empty()) {
      ranges_ = batch;
    } else {
      for (std::size_t c = 0; c < ranges_.size(); ++c) {
        ranges_[c].min = ranges_[c].min + c_ * (batch[c].min - ranges_[c].min);
        ranges_[c].max = ranges_[c].max + c_ * (batch[c].max - ranges_[c].max);
      }
    }
    count_.set(ranges_.size());
  }

  /// The averaged [min, max] of each channel.
  std::vector<value_range> ranges() const {
    detail::check_has_data(has_data(), "moving_average_observer");
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

/// PyTorch's MovingAverageMinMaxObserver: EMA of per-batch min/max.
template <quant_scheme Scheme>
using moving_average_minmax_observer = moving_average_observer<Scheme, detail::batch_min_max>;

/// EMA of per-batch MSE-optimal ranges: the activation observer of mse_clipping schemes.
template <quant_scheme Scheme>
using moving_average_mse_observer = moving_average_observer<Scheme, detail::batch_mse>;

/// The observer an activation quantizer of Scheme uses in QAT (nn::fake_quant's default).
template <quant_scheme Scheme>
using default_activation_observer =
    std::conditional_t<Scheme::mse_clipped, moving_average_mse_observer<Scheme>, moving_average_minmax_observer<Scheme>>;

}  // namespace xquant
