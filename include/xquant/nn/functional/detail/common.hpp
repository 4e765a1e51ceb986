#pragma once
// Helpers shared by the functional ops: argument checks, per-thread scratch memory,
// parallel loops and the reductions they use.
//
// Reductions run in T over eight independent lanes (which the compiler can vectorise:
// a single accumulator forms one serial dependency chain) and combine the lanes in
// double, in a fixed order, so a result depends only on the data, never on timing.

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

/// Elementwise loops: chunks of at least this many elements per thread.
inline constexpr std::size_t elementwise_grain = std::size_t{1} << 15;

/// body(begin, end) over [0, n), on several threads when n is large enough.
template <class Body>
void parallel_elementwise(std::size_t n, Body&& body) {
  if (n < 2 * elementwise_grain || num_threads() == 1) {
    body(std::size_t{0}, n);
    return;
  }
  parallel_for(n, elementwise_grain, body);
}

/// The number of pieces a batch is split into for per-thread partial sums, and the first
/// item of piece `c`. Depends only on the item count and the thread count.
inline std::size_t piece_count(std::size_t items) { return std::max<std::size_t>(1, std::min(num_threads(), items)); }
inline std::size_t piece_begin(std::size_t items, std::size_t pieces, std::size_t c) { return items * c / pieces; }

inline constexpr std::size_t lanes = 8;

/// sum p[i]
template <class T>
double sum(const T* p, std::size_t n) {
  T acc[lanes] = {};
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (std::size_t j = 0; j < lanes; ++j) acc[j] += p[i + j];
  double total = 0;
  for (std::size_t j = 0; j < lanes; ++j) total += acc[j];
  for (; i < n; ++i) total += p[i];
  return total;
}

/// sum (p[i] - mean)^2
template <class T>
double sum_sq_dev(const T* p, std::size_t n, T mean) {
  T acc[lanes] = {};
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (std::size_t j = 0; j < lanes; ++j) {
      const T d = p[i + j] - mean;
      acc[j] += d * d;
    }
  double total = 0;
  for (std::size_t j = 0; j < lanes; ++j) total += acc[j];
  for (; i < n; ++i) total += double(p[i] - mean) * double(p[i] - mean);
  return total;
}

/// sum a[i] * (b[i] - shift)
template <class T>
double dot_shifted(const T* a, const T* b, std::size_t n, T shift) {
  T acc[lanes] = {};
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (std::size_t j = 0; j < lanes; ++j) acc[j] += a[i + j] * (b[i + j] - shift);
  double total = 0;
  for (std::size_t j = 0; j < lanes; ++j) total += acc[j];
  for (; i < n; ++i) total += double(a[i]) * double(b[i] - shift);
  return total;
}

}  // namespace xquant::nn::functional::detail
