#pragma once
// What every calibration observer shares: input validation, the per-channel walk and the
// per-channel min/max scan.
//
// An observer watches float tensors (weights, or activations during calibration / QAT)
// and proposes a clipping range per channel; choose_params turns the ranges into
// (scale, zero_point). The scheme's granularity decides the channels: per_tensor means
// one channel (the whole tensor), per_axis<A> one channel per index of axis A, walked as
// the [outer, channels, inner] view of axis_layout.
//
// Validation, identical for all observers, happens before any state changes (a failed
// observe() leaves the observer as it was):
//   - an empty tensor is a value_error: there is nothing to calibrate on, and silently
//     skipping it usually hides a bug upstream (an empty batch, a wrong slice);
//   - per_axis<A> needs A < rank and the same channel count in every call (shape_error);
//   - NaN or +-Inf is a numeric_error naming the first bad element: a clipping range
//     computed from non-finite data is meaningless, and infinities would blow up
//     histogram ranges.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/kernels/fake_quant.hpp"
#include "xquant/quant/choose_params.hpp"
#include "xquant/quant/params.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant {

/// What calibration code may rely on: every observer in calib/ models this.
template <class O>
concept observer = requires(O& o, const O& co, const array<float>& x) {
  o.observe(x);
  { co.ranges() } -> std::same_as<std::vector<value_range>>;
  { co.params() } -> std::same_as<quant_params>;
  { co.has_data() } -> std::same_as<bool>;
  o.reset();
};

namespace detail {

/// The axis observers of Scheme reduce over: -1 for per_tensor.
template <quant_scheme Scheme>
inline constexpr int observer_axis = Scheme::is_per_axis ? Scheme::axis : -1;

/// "[1, 2, 3]": the multi-index of flat index `flat` in a row-major tensor of `shape`.
inline std::string index_string(std::size_t flat, std::span<const std::size_t> shape) {
  std::vector<std::size_t> index(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    index[d] = shape[d] == 0 ? 0 : flat % shape[d];
    flat = shape[d] == 0 ? 0 : flat / shape[d];
  }
  return shape_string(index);
}

/// Throws numeric_error naming the first non-finite element of x. Only called once a
/// scan has seen that there is one, so the good path pays for a single pass.
[[noreturn]] inline void throw_first_non_finite(std::span<const float> x, std::span<const std::size_t> shape,
                                                const char* who) {
  const auto bad = std::find_if(x.begin(), x.end(), [](float v) { return !std::isfinite(v); });
  const auto i = static_cast<std::size_t>(bad - x.begin());
  const float v = bad == x.end() ? 0.0f : *bad;
  const char* what = std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
  throw_error<numeric_error>(who, ": the tensor contains ", what, " at flat index ", i, " (element ",
                             index_string(i, shape), " of shape ", shape_string(shape),
                             "); observers need finite data");
}

/// Calls fn(channel, pointer, length) for each contiguous run of a channel's data.
/// Channel c of an [outer, channels, inner] layout is `outer` runs of `inner` floats.
template <class Fn>
void for_each_channel_run(const float* data, const axis_layout& layout, Fn&& fn) {
  const float* p = data;
  for (std::size_t o = 0; o < layout.outer; ++o) {
    for (std::size_t c = 0; c < layout.channels; ++c, p += layout.inner) fn(c, p, layout.inner);
  }
}

/// One validated observe() input: its layout and the min/max of each channel.
struct batch_stats {
  axis_layout layout;
  std::vector<value_range> ranges;
};

/// [lo, hi] of the n floats at x widened by their values, on several threads when n is
/// large (min and max do not depend on the order); returns true when x holds a NaN.
inline bool parallel_min_max(const float* x, std::size_t n, value_range& r) {
  constexpr std::size_t chunk = std::size_t{1} << 16;
  const std::size_t chunks = (n + chunk - 1) / chunk;
  if (chunks < 2 || num_threads() == 1) return kernels::min_max(x, n, r.min, r.max);
  std::vector<value_range> part(chunks);
  std::vector<char> nan(chunks, 0);
  parallel_for(chunks, 1, [&](std::size_t first, std::size_t last) {
    for (std::size_t k = first; k < last; ++k) {
      nan[k] = kernels::min_max(x + k * chunk, std::min(chunk, n - k * chunk), part[k].min, part[k].max);
    }
  });
  for (const value_range& p : part) r.include(p);
  return std::find(nan.begin(), nan.end(), 1) != nan.end();
}

/// Checks an observe() input (see the header comment) and scans per-channel min/max in
/// one vectorised pass (kernels::min_max). `axis` is observer_axis<Scheme>; `who` names
/// the observer in messages.
inline batch_stats scan_batch(std::span<const float> x, std::span<const std::size_t> shape, int axis,
                              const char* who) {
  check<shape_error>(x.size() == element_count(shape), who, ": data has ", x.size(), " elements but shape ",
                     shape_string(shape), " has ", element_count(shape));
  check(!x.empty(), who, ": the tensor is empty (shape ", shape_string(shape),
        "); there is nothing to calibrate on");
  check<shape_error>(axis < 0 || static_cast<std::size_t>(axis) < shape.size(), who,
                     ": the scheme is per_axis<", axis, "> but the tensor has shape ", shape_string(shape),
                     " (rank ", shape.size(), ")");
  batch_stats stats{axis_layout::of(shape, axis), {}};
  stats.ranges.resize(stats.layout.channels);
  bool nan = false;
  if (stats.layout.channels == 1) {
    nan = parallel_min_max(x.data(), x.size(), stats.ranges[0]);
  } else {
    for_each_channel_run(x.data(), stats.layout, [&](std::size_t c, const float* p, std::size_t n) {
      nan = kernels::min_max(p, n, stats.ranges[c].min, stats.ranges[c].max) || nan;
    });
  }
  // Every channel saw at least one value: its range is finite unless x holds an infinity.
  const bool finite = !nan && std::all_of(stats.ranges.begin(), stats.ranges.end(), [](const value_range& r) {
    return std::isfinite(r.min) && std::isfinite(r.max);
  });
  if (!finite) throw_first_non_finite(x, shape, who);
  return stats;
}

/// Remembers the channel count of the first observe() and insists on it afterwards:
/// per-axis statistics of different tensors must not be mixed.
class channel_count {
 public:
  /// Throws shape_error when `channels` differs from an earlier call's.
  void check_same(std::size_t channels, std::span<const std::size_t> shape, int axis, const char* who) const {
    check<shape_error>(count_ == 0 || channels == count_, who, ": the observer has seen ", count_,
                       " channels along axis ", axis, ", but this tensor (shape ", shape_string(shape),
                       ") has ", channels);
  }
  void set(std::size_t channels) { count_ = channels; }
  std::size_t get() const { return count_; }
  void reset() { count_ = 0; }

 private:
  std::size_t count_ = 0;  // 0: nothing observed yet
};

/// Intersects a proposed clipping range [lo, hi] (lo <= 0 <= hi) with the data's range
/// `seen`, so that a reported range never extends beyond the data. choose_params widens
/// every range to contain 0, so the result yields the same quantization parameters as
/// [lo, hi] itself. When all data lies beyond one clipping bound (e.g. data in [5, 6]
/// clipped at 4), the result is that bound alone ([4, 4]).
inline value_range clip_to_seen(value_range proposed, value_range seen) {
  value_range r{std::max(proposed.min, seen.min), std::min(proposed.max, seen.max)};
  if (r.min > r.max) {
    if (r.max >= 0) {
      r.min = r.max;
    } else {
      r.max = r.min;
    }
  }
  return r;
}

/// The check behind ranges()/params() of an observer that has seen nothing.
inline void check_has_data(bool has_data, const char* who) {
  check(has_data, who, ": no data observed yet; call observe() before ranges() or params()");
}

}  // namespace detail
}  // namespace xquant
