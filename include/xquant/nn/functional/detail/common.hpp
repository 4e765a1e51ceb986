#pragma once
// Helpers shared by the functional ops: argument checks, per-thread scratch memory,
// parallel loops and the reductions they use.
//
// Reductions run in T over 32 independent lanes (which the compiler vectorises: a single
// accumulator forms one serial dependency chain) and combine the lanes in a fixed order,
// the last 8 in double, so a result depends only on the data, never on timing.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/core/tensor.hpp"

namespace xquant::nn::functional::detail {

using autograd::basic_variable;

/// Throws shape_error unless `v` has rank `rank`; `what` names the argument and its layout,
/// e.g. "conv2d: input [N, C, H, W]".
template <class T>
void require_rank(const basic_variable<T>& v, std::size_t rank, const char* what) {
  check<shape_error>(v.value().dimension() == rank, what, " must have rank ", rank, ", got shape ",
                     shape_string(v.shape()));
}

/// Throws shape_error when the batch (axis 0) is empty.
template <class T>
void require_batch(const basic_variable<T>& v, const char* op) {
  check<shape_error>(v.value().shape()[0] > 0, op, ": empty batch (input shape ", shape_string(v.shape()), ")");
}

/// A per-thread scratch buffer of at least n elements, uninitialised. Buffers with different
/// `Slot`s are distinct, so one op can hold several at once. The memory stays with the
/// thread and is reused by the next call (no allocation per image or per step).
template <class T, int Slot>
T* scratch(std::size_t n) {
  struct buffer {
    std::unique_ptr<T[]> data;
    std::size_t capacity = 0;
  };
  thread_local buffer b;
  if (b.capacity < n) {
    b.data = std::make_unique_for_overwrite<T[]>(n);
    b.capacity = n;
  }
  return b.data.get();
}

using xquant::elementwise_grain;  // core/parallel.hpp
using xquant::parallel_elementwise;

/// Sums over a batch (conv dW) are taken per piece: the batch is cut into piece_count
/// contiguous pieces, each summed into its own buffer, and the buffers are added in piece
/// order. The count depends on the item count only, so the result is the same for any
/// thread count; 8 pieces give 2 to 4 threads several pieces each to claim (core/parallel.hpp).
inline constexpr std::size_t max_pieces = 8;
inline std::size_t piece_count(std::size_t items) { return std::max<std::size_t>(1, std::min(max_pieces, items)); }
inline std::size_t piece_begin(std::size_t items, std::size_t pieces, std::size_t c) { return items * c / pieces; }

/// Reductions keep `lanes` partial sums in T: 4 AVX2 vectors, 2 AVX-512 ones or 8 SSE ones,
/// enough independent add chains to hide the adder's latency (with 8 lanes, one AVX2
/// vector, BatchNorm's sums ran at a quarter of the speed the loads allow).
inline constexpr std::size_t lanes = 32;

/// Forces inlining of the small reduction helpers below: a lane array passed by reference
/// to an out-of-line helper lives in memory (a load and a store per lane per row) instead
/// of in vector registers, which made BatchNorm on 7 x 7 planes twice as slow.
#if defined(__GNUC__) || defined(__clang__)
#define XQUANT_DETAIL_INLINE [[gnu::always_inline]] inline
#else
#define XQUANT_DETAIL_INLINE inline
#endif

/// acc[i % lanes] += term(i) for i < n: whole groups of lanes, then the tail staged in a
/// zero-padded copy and added whole (acc is only indexed by constants, so it stays in
/// registers). A fixed order: the result depends on the data only.
template <class T, class Term>
XQUANT_DETAIL_INLINE void accumulate_lanes(T (&acc)[lanes], std::size_t n, Term term) {
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (std::size_t j = 0; j < lanes; ++j) acc[j] += term(i + j);
  if (i == n) return;
  T rest[lanes] = {};
  for (std::size_t j = 0; i + j < n; ++j) rest[j] = term(i + j);
  for (std::size_t j = 0; j < lanes; ++j) acc[j] += rest[j];
}

/// The sum of the lanes: halves folded in T down to 8 lanes (vector adds), then those 8
/// added in double.
template <class T>
XQUANT_DETAIL_INLINE double fold_lanes(T (&acc)[lanes]) {
  for (std::size_t half = lanes / 2; half >= 8; half /= 2)
    for (std::size_t j = 0; j < half; ++j) acc[j] += acc[j + half];
  double total = 0;
  for (std::size_t j = 0; j < 8; ++j) total += acc[j];
  return total;
}

/// A long sum: terms go into T lanes (vectorised, independent chains), which are folded
/// into a double every flush_terms terms per lane, so that no lane sums more than that many
/// terms in T. The schedule depends on the call sequence only: a fixed order. Summing many
/// short rows (BatchNorm over 7 x 7 planes) into one accumulator, rather than one sum per
/// row, pays the fold once per ~64 rows instead of once per row.
template <class T>
class lane_accumulator {
 public:
  static constexpr std::size_t flush_terms = 64;

  /// Adds term(i) for i < n.
  template <class Term>
  XQUANT_DETAIL_INLINE void add(std::size_t n, Term term) {
    for (std::size_t start = 0; start < n;) {
      const std::size_t len = std::min(n - start, (flush_terms - terms_) * lanes);
      accumulate_lanes(acc_, len, [&](std::size_t i) { return term(start + i); });
      terms_ += (len + lanes - 1) / lanes;
      start += len;
      if (terms_ >= flush_terms) flush();
    }
  }
  double total() {
    flush();
    return total_;
  }

 private:
  void flush() {
    total_ += fold_lanes(acc_);
    for (T& a : acc_) a = T(0);
    terms_ = 0;
  }
  T acc_[lanes] = {};
  double total_ = 0;
  std::size_t terms_ = 0;
};

/// sum p[i]
template <class T>
double sum(const T* p, std::size_t n) {
  lane_accumulator<T> acc;
  acc.add(n, [p](std::size_t i) { return p[i]; });
  return acc.total();
}

}  // namespace xquant::nn::functional::detail
