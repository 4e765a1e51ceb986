#pragma once
// kl_observer: entropy calibration, the KL-divergence threshold search of TensorRT.
//
// Migacz, "8-bit Inference with TensorRT" (GTC 2017), as implemented openly by MXNet
// (contrib/quantization.py, _get_optimal_threshold) and NVIDIA pytorch-quantization
// (calib/histogram.py, _compute_amax_entropy). The threshold t is chosen so that the
// distribution of |x| clipped at t loses the least information when quantized:
//
//   H = histogram of |x| with `bins` bins of width w (default 2048; histogram.hpp)
//   for each candidate i (the number of bins kept), nq <= i <= last occupied bin + 1:
//     P = H[0 : i], with all outlier counts H[i:] added to P[i-1]      (clipping)
//     Q = H[0 : i] merged into nq groups, bin j in group floor(j * nq / i), and expanded
//         back: each group's total spread uniformly over the bins where P != 0
//     smooth P and Q: every zero bin gets eps = 1e-4 and the nonzero bins give up the
//         same mass evenly (MXNet's _smooth_distribution)
//     divergence(i) = KL(P || Q) with both normalized
//   m = argmin divergence (ties: the smallest), threshold t = (m + 0.5) * w
// as the GTC pseudo-code writes it, capped at max|x|.
//
// One deliberate deviation: exact zeros are taken out of bin 0 before the search.
// Quantization represents 0 exactly at any threshold, but the merge of P into nq groups
// smears a spike of zeros (ReLU outputs, zero padding: often half of all values) over
// its group, and that artefact then dominates every divergence: ReLU(N(0,1)) with uint8
// gets t ~ 2.0 with the zeros and t ~ 3.8-3.9 without. (pytorch-quantization patches the
// same problem with hist[0] = hist[1].) Data without exact zeros is unaffected.
//
// nq is the number of quantization levels that cover [0, t]: for a symmetric scheme
// qmax + 1 (128 for 8 bits, as TensorRT); for an asymmetric scheme on non-negative data
// (ReLU outputs) qmax - qmin + 1 (256 for uint8, as pytorch-quantization's unsigned
// mode); in general round(t' / scale) + 1, where scale is what choose_params derives from
// the candidate range and t' its farther end from 0. (MXNet merges groups of
// floor(i / nq) bins with the remainder in the last group; the proportional split used
// here keeps the groups within one bin of equal size.)
// The resulting range: symmetric [-t, t]; asymmetric [max(min x, -t), min(max x, t)],
// e.g. [0, t] for ReLU outputs.
//
// Cost: O(occupied bins^2) per channel (about 2 million steps for 2048 bins), paid in
// ranges(), not in observe(). With fewer occupied bins than nq (e.g. a 16-bit scheme
// with 2048 bins) no candidate exists and the range is the data's [min, max]: use more
// bins for wide schemes.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "xquant/calib/histogram.hpp"
#include "xquant/calib/observer_base.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/quant/choose_params.hpp"

namespace xquant {

namespace detail {

/// MXNet's _smooth_distribution: eps to every zero bin, eps * zeros / nonzeros taken from
/// every nonzero bin (the sum is unchanged). False when nothing is nonzero or a bin would
/// become <= 0. The reference form of what entropy_divergence computes in closed form.
inline bool smooth_zero_bins(std::span<double> d, double eps = 1e-4) {
  const auto zeros = static_cast<std::size_t>(std::count(d.begin(), d.end(), 0.0));
  const std::size_t nonzeros = d.size() - zeros;
  if (nonzeros == 0) return false;
  const double take = eps * static_cast<double>(zeros) / static_cast<double>(nonzeros);
  bool positive = true;
  for (double& v : d) {
    v = v == 0.0 ? eps : v - take;
    positive = positive && v > 0.0;
  }
  return positive;
}

/// Per-group scratch reused across the candidates of one search.
struct entropy_workspace {
  std::vector<double> group_total;
  std::vector<std::size_t> group_nonzero;
};

/// divergence(i) of the header comment: KL(smooth(P) || smooth(Q)) for P = hist[0:i] plus
/// `outliers` (the counts of hist[i:]) in its last bin, Q its nq-level quantization.
///
/// Computed in two passes over the groups, without materializing P and Q: group g holds
/// bins [ceil(g i / nq), ceil((g + 1) i / nq)), i.e. exactly the j with
/// floor(j nq / i) = g. Smoothing keeps the sums, so the normalizers are sum P = all
/// counts and sum Q = the counts below i. Where P is 0, Q is 0 too, both smooth to eps and
/// the term vanishes; so only bins with P != 0 cost a logarithm.
inline double entropy_divergence(std::span<const std::uint64_t> hist, std::size_t i, std::size_t nq,
                                 double outliers, entropy_workspace& ws, double eps = 1e-4) {
  constexpr double infinity = std::numeric_limits<double>::infinity();
  const auto p_at = [&](std::size_t j) {
    return static_cast<double>(hist[j]) + (j == i - 1 ? outliers : 0.0);
  };
  ws.group_total.assign(nq, 0.0);
  ws.group_nonzero.assign(nq, 0);
  // Pass 1: group totals (without outliers), nonzero bins of P, zeros of P and Q.
  std::size_t p_nonzero = 0, q_nonzero = 0;
  double p_min = infinity, q_min = infinity, below = 0;
  for (std::size_t g = 0; g < nq; ++g) {
    const std::size_t from = (g * i + nq - 1) / nq, to = ((g + 1) * i + nq - 1) / nq;
    for (std::size_t j = from; j < to; ++j) {
      ws.group_total[g] += static_cast<double>(hist[j]);
      const double p = p_at(j);
      if (p != 0.0) {
        ++ws.group_nonzero[g];
        p_min = std::min(p_min, p);
      }
    }
    below += ws.group_total[g];
    p_nonzero += ws.group_nonzero[g];
    if (ws.group_total[g] != 0.0) {
      q_nonzero += ws.group_nonzero[g];
      q_min = std::min(q_min, ws.group_total[g] / static_cast<double>(ws.group_nonzero[g]));
    }
  }
  if (p_nonzero == 0 || q_nonzero == 0) return infinity;
  const double p_take = eps * static_cast<double>(i - p_nonzero) / static_cast<double>(p_nonzero);
  const double q_take = eps * static_cast<double>(i - q_nonzero) / static_cast<double>(q_nonzero);
  if (p_take >= p_min || q_take >= q_min) return infinity;
  // Pass 2: sum of P' log(P' / Q') over the bins where P != 0.
  double sum = 0;
  for (std::size_t g = 0; g < nq; ++g) {
    if (ws.group_nonzero[g] == 0) continue;
    const double total = ws.group_total[g];
    const double q = total != 0.0 ? total / static_cast<double>(ws.group_nonzero[g]) - q_take : eps;
    const std::size_t from = (g * i + nq - 1) / nq, to = ((g + 1) * i + nq - 1) / nq;
    for (std::size_t j = from; j < to; ++j) {
      const double p = p_at(j);
      if (p != 0.0) sum += (p - p_take) * std::log((p - p_take) / q);
    }
  }
  const double p_sum = below + outliers;
  return sum / p_sum + std::log(below / p_sum);
}

/// The candidate i with the least divergence (ties: the smallest), or 0 when no
/// candidate has nq <= i. levels(i) gives nq for candidate i.
template <class Levels>
std::size_t entropy_threshold_bin(std::span<const std::uint64_t> hist, Levels&& levels) {
  std::size_t used = hist.size();
  while (used > 0 && hist[used - 1] == 0) --used;
  double outliers = 0;
  for (std::size_t j = 0; j < used; ++j) outliers += static_cast<double>(hist[j]);
  entropy_workspace ws;
  std::size_t best = 0;
  double best_divergence = std::numeric_limits<double>::infinity();
  for (std::size_t i = 1; i <= used; ++i) {
    outliers -= static_cast<double>(hist[i - 1]);  // now the counts of hist[i:]
    const std::size_t nq = levels(i);
    if (nq < 2 || nq > i) continue;
    const double d = entropy_divergence(hist, i, nq, outliers, ws);
    if (best == 0 || d < best_divergence) {
      best = i;
      best_divergence = d;
    }
  }
  return best;
}

}  // namespace detail

template <quant_scheme Scheme>
class kl_observer {
 public:
  using scheme_type = Scheme;

  explicit kl_observer(std::size_t bins = histogram::default_bins)
      : hists_(bins, detail::binned_values::magnitudes) {}

  void observe(const array<float>& x) {
    const shape_t shape = shape_of(x);
    observe(std::span<const float>(x.data(), x.size()), shape);
  }

  void observe(std::span<const float> x, std::span<const std::size_t> shape) {
    hists_.observe(x, shape, detail::observer_axis<Scheme>, "kl_observer::observe");
  }

  /// The entropy-calibrated range of each channel.
  std::vector<value_range> ranges() const {
    detail::check_has_data(has_data(), "kl_observer");
    std::vector<value_range> out(hists_.channels());
    for (std::size_t c = 0; c < out.size(); ++c) out[c] = channel_range(c);
    return out;
  }

  quant_params params() const { return choose_params<Scheme>(std::span<const value_range>(ranges())); }

  /// The threshold t of channel c: its range is [-t, t] (symmetric) or that clipped to
  /// the data (asymmetric).
  float threshold(std::size_t c) const {
    detail::check_has_data(has_data(), "kl_observer");
    const histogram& h = hists_.at(c);
    const value_range seen = hists_.seen(c);
    const float amax = std::max(std::fabs(seen.min), std::fabs(seen.max));
    const double w = h.bin_width();
    std::vector<std::uint64_t> counts(h.counts().begin(), h.counts().end());
    counts[0] -= hists_.zeros(c);  // exact zeros all lie in bin 0 = [0, w)
    const std::size_t m = detail::entropy_threshold_bin(counts, [&](std::size_t i) {
      return levels_up_to(range_for_threshold(static_cast<float>(static_cast<double>(i) * w), seen));
    });
    if (m == 0) return amax;
    return std::min(static_cast<float>((static_cast<double>(m) + 0.5) * w), amax);
  }

  bool has_data() const { return hists_.has_data(); }
  std::size_t channels() const { return hists_.channels(); }
  /// Channel c's histogram of |x| (exact zeros included); bin j is [j * w, (j + 1) * w).
  const histogram& channel_histogram(std::size_t c) const { return hists_.at(c); }
  /// The number of exact zeros channel c has seen.
  std::uint64_t zeros(std::size_t c) const { return hists_.zeros(c); }
  value_range observed_range(std::size_t c) const { return hists_.seen(c); }

  void reset() { hists_.reset(); }

 private:
  static value_range range_for_threshold(float t, value_range seen) {
    if constexpr (Scheme::is_symmetric) {
      return {-t, t};
    } else {
      return detail::clip_to_seen({-t, t}, seen);
    }
  }

  // The number of levels from 0 to the farther end of r, with choose_params' scale.
  static std::size_t levels_up_to(value_range r) {
    const auto [scale, zero_point] = detail::params_for_range<Scheme>(r);
    const double farther = std::max(-std::min(r.min, 0.0f), std::max(r.max, 0.0f));
    return static_cast<std::size_t>(std::llround(farther / static_cast<double>(scale))) + 1;
  }

  value_range channel_range(std::size_t c) const { return range_for_threshold(threshold(c), hists_.seen(c)); }

  detail::channel_histograms hists_;
};

}  // namespace xquant
