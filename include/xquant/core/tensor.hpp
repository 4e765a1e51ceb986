#pragma once
// Tensor vocabulary. This is the only header that includes xtensor: the rest of the
// library names tensors through these aliases, so the storage choice lives in one place.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "xquant/core/allocator.hpp"
#include "xquant/core/error.hpp"

namespace xquant {

/// Dynamic-rank, row-major tensor (NCHW for images). Its buffers come from the
/// caching allocator (allocator.hpp), so training loops do not churn the system heap.
template <class T>
using array = xt::xarray<T, xt::layout_type::row_major, caching_allocator<T>>;

using shape_t = std::vector<std::size_t>;

/// "[2, 3, 4]" — for error messages.
inline std::string shape_string(std::span<const std::size_t> shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text.append(", ");
    text.append(std::to_string(shape[i]));
  }
  text.push_back(']');
  return text;
}

inline std::size_t element_count(std::span<const std::size_t> shape) {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  return n;
}

/// A row-major tensor seen along one axis as [outer, channels, inner]: element
/// (o, c, i) is at flat index (o * channels + c) * inner + i. Per-axis quantization,
/// observers and per-channel kernels all walk tensors this way.
struct axis_layout {
  std::size_t outer = 1;
  std::size_t channels = 1;
  std::size_t inner = 1;

  /// The layout of `shape` along `axis`; axis < 0 means "whole tensor is one channel".
  static axis_layout of(std::span<const std::size_t> shape, int axis) {
    axis_layout layout;
    if (axis < 0) {
      layout.inner = element_count(shape);
      return layout;
    }
    check<shape_error>(static_cast<std::size_t>(axis) < shape.size(), "axis ", axis,
                       " is out of range for a tensor of shape ", shape_string(shape));
    const auto a = static_cast<std::size_t>(axis);
    for (std::size_t d = 0; d < a; ++d) layout.outer *= shape[d];
    layout.channels = shape[a];
    for (std::size_t d = a + 1; d < shape.size(); ++d) layout.inner *= shape[d];
    return layout;
  }

  std::size_t size() const { return outer * channels * inner; }
};

template <class T>
shape_t shape_of(const array<T>& a) {
  return shape_t(a.shape().begin(), a.shape().end());
}

}  // namespace xquant
