#pragma once
// The machinery behind functional/fake_quant.hpp: the element formulas, the walk over a
// tensor seen along the scheme's axis, deterministic per-channel reductions and the
// argument checks. See functional/fake_quant.hpp for the semantics.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/quantize.hpp"
#include "xquant/quant/rounding.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn::functional::detail {

using autograd::basic_variable;

template <class T>
inline constexpr bool is_fake_quant_scalar = std::is_same_v<T, float> || std::is_same_v<T, double>;

// ---- element formulas ----------------------------------------------------------------

/// round(x / s) with the scheme's rounding, in T: one correctly rounded division, as in
/// quantize_value. The clipped-STE and LSQ masks are decided on this value.
template <quant_scheme Scheme, class T>
T rounded_quotient(T x, T s) {
  return round_to_integral<typename Scheme::rounding>(x / s);
}

/// Fake quantization of one value: (clamp(round(x / s) + z, qmin, qmax) - z) * s.
/// float: literally quantize_value then dequantize_value, so the result is the ONNX one
/// bit for bit (and equals quant/quantize.hpp's fake_quantize). double: the same
/// operations in double (used by the float64 gradient checks; it can differ from the
/// float result where the float division x / s lands on the other side of a rounding
/// boundary). The clamped integer goes through int32 in both, so -0.0 comes out as +0.0.
/// x must not be NaN.
template <quant_scheme Scheme, class T>
T fake_quant_element(T x, T s, std::int32_t z) {
  if constexpr (std::is_same_v<T, float>) {
    return dequantize_value(quantize_value<Scheme>(x, s, z), s, z);
  } else {
    const double q = rounded_quotient<Scheme>(static_cast<double>(x), static_cast<double>(s));
    const double lo = Scheme::qmin - z;
    const double hi = Scheme::qmax - z;
    return static_cast<double>(static_cast<std::int32_t>(std::fmin(std::fmax(q, lo), hi))) * s;
  }
}

/// The integer bounds of q - z, i.e. of round(x / s) after clamping: [qmin - z, qmax - z].
template <quant_scheme Scheme, class T>
struct relative_bounds {
  T lo, hi;
  explicit relative_bounds(std::int32_t z)
      : lo(static_cast<T>(Scheme::qmin - z)), hi(static_cast<T>(Scheme::qmax - z)) {}
  bool inside(T r) const { return r >= lo && r <= hi; }  // false for NaN
};

// ---- walking a tensor along the scheme's axis -----------------------------------------

/// fn(channel, begin, end) for each maximal run of flat indices in [begin, end) that
/// belongs to one channel of the [outer, channels, inner] view `l`.
template <class Fn>
void for_each_run(const axis_layout& l, std::size_t begin, std::size_t end, Fn&& fn) {
  for (std::size_t i = begin; i < end;) {
    const std::size_t row = i / l.inner;
    const std::size_t stop = std::min(end, (row + 1) * l.inner);
    fn(row % l.channels, i, stop);
    i = stop;
  }
}

/// Elementwise loops: at least this many elements per thread.
inline constexpr std::size_t fq_grain = std::size_t{1} << 15;

/// fn(channel, begin, end) over all of `l`, split into runs on several threads when large.
/// fn must only write to indices of its own runs.
template <class Fn>
void parallel_runs(const axis_layout& l, Fn fn) {
  const std::size_t n = l.size();
  if (n < 2 * fq_grain || num_threads() == 1) {
    for_each_run(l, 0, n, fn);
    return;
  }
  parallel_for(n, fq_grain, [&](std::size_t begin, std::size_t end) { for_each_run(l, begin, end, fn); });
}

/// Reductions are summed over fixed chunks of this many elements: the chunking does not
/// depend on the thread count, so a gradient is bit-identical on 1 or 16 threads.
inline constexpr std::size_t reduction_chunk = std::size_t{1} << 14;

/// Per-channel sums of fn(channel, begin, end, double& acc) over the runs of `l`; fn adds
/// its run's contribution to acc. Each fixed chunk sums into its own partials, which are
/// added in chunk order. fn may also write to its own indices (e.g. an input gradient).
template <class Fn>
std::vector<double> channel_sums(const axis_layout& l, Fn fn) {
  const std::size_t n = l.size();
  const std::size_t chunks = (n + reduction_chunk - 1) / reduction_chunk;
  std::vector<double> partial(chunks * l.channels, 0.0);
  auto run_chunks = [&](std::size_t first, std::size_t last) {
    for (std::size_t k = first; k < last; ++k) {
      double* acc = partial.data() + k * l.channels;
      for_each_run(l, k * reduction_chunk, std::min(n, (k + 1) * reduction_chunk),
                   [&](std::size_t c, std::size_t b, std::size_t e) { fn(c, b, e, acc[c]); });
    }
  };
  if (chunks < 2 || num_threads() == 1) {
    run_chunks(0, chunks);
  } else {
    parallel_for(chunks, 1, run_chunks);
  }
  std::vector<double> total(l.channels, 0.0);
  for (std::size_t k = 0; k < chunks; ++k)
    for (std::size_t c = 0; c < l.channels; ++c) total[c] += partial[k * l.channels + c];
  return total;
}

// ---- checks ----------------------------------------------------------------------------

/// Throws numeric_error naming the first NaN of x. Called after a loop has seen one.
template <class T>
[[noreturn]] void throw_first_nan(const array<T>& x, const char* op) {
  const T* p = x.data();
  const std::size_t i = static_cast<std::size_t>(std::find_if(p, p + x.size(), [](T v) { return std::isnan(v); }) - p);
  xquant::detail::throw_error<numeric_error>(op, ": the input contains NaN at flat index ", i, " (shape ",
                                             shape_string(shape_of(x)), "); NaN has no quantized value");
}

/// Records whether any NaN was seen by the threads of a loop.
class nan_flag {
 public:
  void set() { seen_.store(true, std::memory_order_relaxed); }
  bool seen() const { return seen_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> seen_{false};
};

/// The [outer, channels, inner] view of a tensor of `shape` for Scheme, checking that a
/// per_axis scheme's axis exists.
template <quant_scheme Scheme>
axis_layout scheme_layout(const shape_t& shape, const char* op) {
  if constexpr (Scheme::is_per_axis) {
    check<shape_error>(static_cast<std::size_t>(Scheme::axis) < shape.size(), op, ": the scheme is per_axis<",
                       Scheme::axis, "> but the input has shape ", shape_string(shape));
  }
  return axis_layout::of(shape, Scheme::is_per_axis ? Scheme::axis : -1);
}

/// Checks a learned per-channel parameter (LSQ step size, PACT alpha): shape [channels]
/// (channels = 1 for per_tensor) and finite values. Returns max(value, floor) per channel:
/// the value the forward uses.
template <class T>
std::vector<T> learned_values(const basic_variable<T>& v, std::size_t channels, T floor, const char* op,
                              const char* what) {
  check<shape_error>(v.value().dimension() == 1 && v.size() == channels, op, ": ", what, " must have shape [",
                     channels, "] (one per ", channels == 1 ? "tensor" : "channel of the scheme's axis",
                     "), got shape ", shape_string(v.shape()));
  std::vector<T> out(channels);
  for (std::size_t c = 0; c < channels; ++c) {
    const T s = v.value().data()[c];
    check<numeric_error>(std::isfinite(s), op, ": ", what, "[", c, "] = ", s, " is not finite");
    out[c] = std::max(s, floor);
  }
  return out;
}

}  // namespace xquant::nn::functional::detail
