#pragma once
// scale_channels / divide_channels: multiply or divide every slice of x along one axis by
// a per-channel factor, with gradients to both x and the factors.
//
//   x of any rank >= 1, s [C] with C = x.shape[axis]; x seen as [outer, C, inner]:
//     scale_channels(x, s, axis)    y[o, c, i] = x[o, c, i] * s[c]
//     divide_channels(x, s, axis)   y[o, c, i] = x[o, c, i] / s[c]
//
//   backward (multiply)   dx = dy * s[c]        ds[c] = sum_{o,i} dy * x
//   backward (divide)     dx = dy / s[c]        ds[c] = -sum_{o,i} dy * x / s[c]^2
//                                                     = -sum_{o,i} dy * y / s[c]
//
// This is what BatchNorm folding during QAT needs (nn/layers/conv_bn.hpp): weights
// [O, I, K, K] scaled along axis 0 by gamma / running_std, and the convolution output
// [N, C, H, W] divided along axis 1 by the same factors, gradients reaching gamma through
// both. A zero factor in divide_channels is a value_error (the result would be Inf/NaN).
//
// The forward is one pass in memory order. The backward is one pass over the rows of the
// [outer, channels, inner] view: dx, and the dot product of each row (summed in T in index
// order); the factor gradient of channel c is then the double sum of its rows' products in
// row order. Neither depends on how rows are split between threads, so the gradients are
// bit-identical whatever the thread count.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/nn/functional/detail/common.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

namespace detail {

/// x seen as [outer, channels, inner] around `axis`.
struct channel_axis_layout {
  std::size_t outer = 1, channels = 1, inner = 1;
};

template <class T>
channel_axis_layout channel_scale_layout(const basic_variable<T>& x, const basic_variable<T>& s, std::size_t axis,
                                         const char* op) {
  const shape_t shape = x.shape();
  check<shape_error>(axis < shape.size(), op, ": axis ", axis, " is out of range for input shape ",
                     shape_string(shape));
  channel_axis_layout l;
  for (std::size_t d = 0; d < axis; ++d) l.outer *= shape[d];
  l.channels = shape[axis];
  for (std::size_t d = axis + 1; d < shape.size(); ++d) l.inner *= shape[d];
  check<shape_error>(s.value().dimension() == 1 && s.size() == l.channels, op, ": the factors must have shape [",
                     l.channels, "] (size of axis ", axis, " of input ", shape_string(shape), "), got ",
                     shape_string(s.shape()));
  return l;
}

/// dx += dy * f (or dy / f) for rows [begin, end) of the [outer * channels, inner] view;
/// into a new, uninitialised buffer (fresh) dx = 0 + dy * f, which is the same bit for bit.
template <bool Divide, class T>
void input_grad_rows(const T* dy, const T* fs, const channel_axis_layout& l, std::size_t begin, std::size_t end,
                     autograd::grad_target<T> dx) {
  for (std::size_t r = begin; r < end; ++r) {
    const T f = fs[r % l.channels];
    const T* dyr = dy + r * l.inner;
    T* dxr = dx.data + r * l.inner;
    const auto term = [f](T g) { return Divide ? g / f : g * f; };
    if (dx.fresh) {
      for (std::size_t i = 0; i < l.inner; ++i) dxr[i] = T(0) + term(dyr[i]);
    } else {
      for (std::size_t i = 0; i < l.inner; ++i) dxr[i] += term(dyr[i]);
    }
  }
}

/// out[r] = sum_i a[r][i] * b[r][i] for rows [begin, end) of `inner` elements, summed in T in
/// index order (the order fixes the result bit for bit). Four rows at a time: four
/// independent dependency chains instead of one keep the adder busy.
template <class T>
void row_dot_products(const T* a, const T* b, std::size_t inner, std::size_t begin, std::size_t end, T* out) {
  std::size_t r = begin;
  for (; r + 4 <= end; r += 4) {
    const T* a0 = a + r * inner;
    const T* b0 = b + r * inner;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (std::size_t i = 0; i < inner; ++i) {
      s0 += a0[i] * b0[i];
      s1 += a0[inner + i] * b0[inner + i];
      s2 += a0[2 * inner + i] * b0[2 * inner + i];
      s3 += a0[3 * inner + i] * b0[3 * inner + i];
    }
    out[r] = s0;
    out[r + 1] = s1;
    out[r + 2] = s2;
    out[r + 3] = s3;
  }
  for (; r < end; ++r) {
    T sum = 0;
    for (std::size_t i = 0; i < inner; ++i) sum += a[r * inner + i] * b[r * inner + i];
    out[r] = sum;
  }
}

template <bool Divide, class T>
basic_variable<T> channel_scale_impl(const basic_variable<T>& x, const basic_variable<T>& s, std::size_t axis,
                                     const char* op) {
  const channel_axis_layout l = channel_scale_layout(x, s, axis, op);
  const T* ps = s.value().data();
  if constexpr (Divide) {
    for (std::size_t c = 0; c < l.channels; ++c) {
      check<value_error>(ps[c] != T(0), op, ": factor ", c, " is zero");
    }
  }
  array<T> y(x.value().shape());
  const T* px = x.value().data();
  T* py = y.data();
  const std::size_t rows = l.outer * l.channels;
  parallel_for(rows, std::max<std::size_t>(1, elementwise_grain / std::max<std::size_t>(l.inner, 1)),
               [&](std::size_t begin, std::size_t end) {
                 for (std::size_t r = begin; r < end; ++r) {
                   const T f = ps[r % l.channels];
                   const T* xr = px + r * l.inner;
                   T* yr = py + r * l.inner;
                   if constexpr (Divide) {
                     for (std::size_t i = 0; i < l.inner; ++i) yr[i] = xr[i] / f;
                   } else {
                     for (std::size_t i = 0; i < l.inner; ++i) yr[i] = xr[i] * f;
                   }
                 }
               });
  return autograd::make_result<T>(std::move(y), {x, s}, [l](autograd::node<T>& n) {
    const T* dy = n.grad.data();
    const T* fs = n.inputs[1]->value.data();
    const bool want_dx = n.inputs[0]->requires_grad;
    const autograd::grad_target<T> dx = want_dx ? autograd::input_grad_target(*n.inputs[0]) : autograd::grad_target<T>{};
    const bool want_ds = n.inputs[1]->requires_grad;
    // d/ds of x * s is x; of x / s it is -x / s^2 = -y / s (y is this node's value).
    const T* src = Divide ? n.value.data() : n.inputs[0]->value.data();
    const std::size_t rows = l.outer * l.channels;
    std::vector<T> row_sums(want_ds ? rows : 0);
    // One pass over the rows, eight at a time: dx, then (while they are in cache) their
    // dot products.
    parallel_for(rows, std::max<std::size_t>(8, elementwise_grain / std::max<std::size_t>(l.inner, 1)),
                 [&](std::size_t begin, std::size_t end) {
                   for (std::size_t r = begin; r < end; r += 8) {
                     const std::size_t stop = std::min(end, r + 8);
                     if (want_dx) input_grad_rows<Divide>(dy, fs, l, r, stop, dx);
                     if (want_ds) row_dot_products(dy, src, l.inner, r, stop, row_sums.data());
                   }
                 });
    if (!want_ds) return;
    T* ds = autograd::input_grad(*n.inputs[1]).data();
    for (std::size_t c = 0; c < l.channels; ++c) {
      double acc = 0;
      for (std::size_t o = 0; o < l.outer; ++o) acc += static_cast<double>(row_sums[o * l.channels + c]);
      if constexpr (Divide) {
        ds[c] += static_cast<T>(-acc / static_cast<double>(fs[c]));
      } else {
        ds[c] += static_cast<T>(acc);
      }
    }
  });
}

}  // namespace detail

/// y = x * s[c] along `axis` (default 1, the channels of [N, C, ...]). See the top of the file.
template <class T>
basic_variable<T> scale_channels(const basic_variable<T>& x, const basic_variable<T>& s, std::size_t axis = 1) {
  return detail::channel_scale_impl<false>(x, s, axis, "scale_channels");
}

/// y = x / s[c] along `axis` (default 1). A zero factor is a value_error.
template <class T>
basic_variable<T> divide_channels(const basic_variable<T>& x, const basic_variable<T>& s, std::size_t axis = 1) {
  return detail::channel_scale_impl<true>(x, s, axis, "divide_channels");
}

}  // namespace xquant::nn::functional
