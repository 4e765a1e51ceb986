#pragma once
// Pooling over NCHW planes, as PyTorch (ceil_mode = false, dilation 1).
//
//   max_pool2d: y = max over the window (padding never wins: it is -inf). The gradient
//               goes to the first maximum in window order (row-major), whose index the
//               forward records.
//   avg_pool2d: y = sum over the window / (KH * KW): padding counts as zeros in the
//               divisor (count_include_pad = true, PyTorch's default).
//   global_avg_pool: [N, C, H, W] -> [N, C], the mean of each plane.
// Padding must be at most half the kernel (PyTorch's rule), so every window holds at
// least one real value. Every plane is independent: all loops run in parallel over planes
// and are deterministic for any thread count.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/parallel.hpp"
#include "xquant/nn/functional/detail/common.hpp"
#include "xquant/nn/functional/detail/pool.hpp"
#include "xquant/nn/functional/detail/window.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

struct pool2d_options {
  std::size_t kernel_h = 2, kernel_w = 2;
  std::size_t stride_h = 2, stride_w = 2;
  std::size_t pad_h = 0, pad_w = 0;

  /// A square window; stride 0 means stride = kernel (PyTorch's default).
  static pool2d_options square(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0) {
    const std::size_t s = stride == 0 ? kernel : stride;
    return {kernel, kernel, s, s, padding, padding};
  }
};

namespace detail {

/// A pooling is a depthwise window sweep: conv_geometry with O = groups = C.
template <class T>
conv_geometry pool2d_geometry(const basic_variable<T>& x, const pool2d_options& opt, const char* op) {
  check<shape_error>(x.value().dimension() == 4, op, ": input [N, C, H, W] must have rank 4, got shape ",
                     shape_string(x.shape()));
  require_batch(x, op);
  check<value_error>(opt.kernel_h > 0 && opt.kernel_w > 0 && opt.stride_h > 0 && opt.stride_w > 0, op,
                     ": kernel and stride must be positive, got kernel ", opt.kernel_h, "x", opt.kernel_w,
                     ", stride ", opt.stride_h, "x", opt.stride_w);
  check<value_error>(2 * opt.pad_h <= opt.kernel_h && 2 * opt.pad_w <= opt.kernel_w, op, ": padding ", opt.pad_h,
                     "x", opt.pad_w, " must be at most half the kernel ", opt.kernel_h, "x", opt.kernel_w);
  const auto& s = x.value().shape();
  conv_geometry g{.n = s[0], .c = s[1], .h = s[2], .w = s[3], .o = s[1], .kh = opt.kernel_h, .kw = opt.kernel_w,
                  .sh = opt.stride_h, .sw = opt.stride_w, .ph = opt.pad_h, .pw = opt.pad_w, .groups = s[1]};
  check<shape_error>(g.h + 2 * g.ph >= g.kh && g.w + 2 * g.pw >= g.kw, op, ": kernel ", g.kh, "x", g.kw,
                     " is larger than the padded input ", g.h + 2 * g.ph, "x", g.w + 2 * g.pw, " (input ",
                     shape_string(x.shape()), ", padding ", g.ph, "x", g.pw, ")");
  g.oh = window_output(g.h, g.kh, g.sh, g.ph);
  g.ow = window_output(g.w, g.kw, g.sw, g.pw);
  return g;
}

/// body(plane) for every plane of an [N, C, ...] tensor, in parallel.
template <class Body>
void for_each_plane(std::size_t planes, Body&& body) {
  parallel_for(planes, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t p = begin; p < end; ++p) body(p);
  });
}

}  // namespace detail

template <class T>
basic_variable<T> max_pool2d(const basic_variable<T>& x, const pool2d_options& options) {
  const detail::conv_geometry g = detail::pool2d_geometry(x, options, "max_pool2d");
  array<T> y(shape_t{g.n, g.c, g.oh, g.ow});
  std::vector<std::uint32_t> argmax(y.size());
  const T* px = x.value().data();
  detail::for_each_plane(g.n * g.c, [&](std::size_t p) {
    detail::max_pool_plane(px + p * g.in_plane(), g, y.data() + p * g.out_plane(), argmax.data() + p * g.out_plane());
  });
  return autograd::make_result<T>(std::move(y), {x}, [g, argmax = std::move(argmax)](autograd::node<T>& n) {
    const autograd::grad_target<T> dx = autograd::input_grad_target(*n.inputs[0]);
    const T* dy = n.grad.data();
    detail::for_each_plane(g.n * g.c, [&](std::size_t p) {
      T* plane = dx.data + p * g.in_plane();
      if (dx.fresh) std::fill_n(plane, g.in_plane(), T(0));
      for (std::size_t k = p * g.out_plane(); k < (p + 1) * g.out_plane(); ++k) plane[argmax[k]] += dy[k];
    });
  });
}

/// Square window; stride 0 means stride = kernel.
template <class T>
basic_variable<T> max_pool2d(const basic_variable<T>& x, std::size_t kernel, std::size_t stride = 0,
                             std::size_t padding = 0) {
  return max_pool2d(x, pool2d_options::square(kernel, stride, padding));
}

template <class T>
basic_variable<T> avg_pool2d(const basic_variable<T>& x, const pool2d_options& options) {
  const detail::conv_geometry g = detail::pool2d_geometry(x, options, "avg_pool2d");
  array<T> y(shape_t{g.n, g.c, g.oh, g.ow});
  const T* px = x.value().data();
  detail::for_each_plane(g.n * g.c, [&](std::size_t p) {
    detail::avg_pool_plane(px + p * g.in_plane(), g, y.data() + p * g.out_plane());
  });
  return autograd::make_result<T>(std::move(y), {x}, [g](autograd::node<T>& n) {
    const autograd::grad_target<T> dx = autograd::input_grad_target(*n.inputs[0]);
    const T* dy = n.grad.data();
    detail::for_each_plane(g.n * g.c, [&](std::size_t p) {
      if (dx.fresh) std::fill_n(dx.data + p * g.in_plane(), g.in_plane(), T(0));
      detail::avg_pool_backward_plane(dy + p * g.out_plane(), g, dx.data + p * g.in_plane());
    });
  });
}

/// Square window; stride 0 means stride = kernel.
template <class T>
basic_variable<T> avg_pool2d(const basic_variable<T>& x, std::size_t kernel, std::size_t stride = 0,
                             std::size_t padding = 0) {
  return avg_pool2d(x, pool2d_options::square(kernel, stride, padding));
}

/// [N, C, H, W] -> [N, C]: the mean of each plane.
template <class T>
basic_variable<T> global_avg_pool(const basic_variable<T>& x) {
  detail::require_rank(x, 4, "global_avg_pool: input [N, C, H, W]");
  detail::require_batch(x, "global_avg_pool");
  const auto& s = x.value().shape();
  const std::size_t planes = s[0] * s[1], plane = s[2] * s[3];
  check<shape_error>(plane > 0, "global_avg_pool: empty planes in input ", shape_string(x.shape()));
  array<T> y(shape_t{s[0], s[1]});
  const T* px = x.value().data();
  detail::for_each_plane(planes, [&](std::size_t p) {
    y.data()[p] = T(detail::sum(px + p * plane, plane) / double(plane));
  });
  return autograd::make_result<T>(std::move(y), {x}, [planes, plane](autograd::node<T>& n) {
    const autograd::grad_target<T> dx = autograd::input_grad_target(*n.inputs[0]);
    const T* dy = n.grad.data();
    detail::for_each_plane(planes, [&](std::size_t p) {
      const T v = dy[p] / T(plane);
      T* out = dx.data + p * plane;
      if (dx.fresh) {
        std::fill_n(out, plane, v);
      } else {
        for (std::size_t i = 0; i < plane; ++i) out[i] += v;
      }
    });
  });
}

}  // namespace xquant::nn::functional
