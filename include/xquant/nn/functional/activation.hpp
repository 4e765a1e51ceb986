#pragma once
// Elementwise activations.
//
//   relu(x)  = max(x, 0)          gradient passes where x > 0
//   relu6(x) = min(max(x, 0), 6)  gradient passes where 0 < x < 6 strictly (PyTorch's
//                                 hardtanh backward: none at the kinks)
// NaN propagates through the forward, as in PyTorch.

#include <cstddef>

#include "xquant/autograd/variable.hpp"
#include "xquant/nn/functional/detail/common.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

namespace detail {

/// y = f(x) elementwise; backward: dx += dy where pass(x) (dx = ... when dx is fresh).
/// Both run in parallel chunks.
/// The loops load unconditionally and select, so they compile to branch-free vector code.
template <class T, class F, class Pass>
basic_variable<T> pointwise_activation(const basic_variable<T>& x, F f, Pass pass) {
  array<T> y(x.value().shape());
  const T* px = x.value().data();
  T* py = y.data();
  parallel_elementwise(y.size(), [px, py, f](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) py[i] = f(px[i]);
  });
  return autograd::make_result<T>(std::move(y), {x}, [pass](autograd::node<T>& n) {
    const T* in = n.inputs[0]->value.data();
    const T* dy = n.grad.data();
    const autograd::grad_target<T> dx = autograd::input_grad_target(*n.inputs[0]);
    parallel_elementwise(n.grad.size(), [in, dy, dx, pass](std::size_t begin, std::size_t end) {
      T* out = dx.data;
      // dy[i] is loaded whether or not it passes: a conditional load keeps the loop scalar
      // and branchy (mispredicted half the time on ReLU's inputs).
      if (dx.fresh) {
        for (std::size_t i = begin; i < end; ++i) {
          const T g = dy[i];
          out[i] = pass(in[i]) ? g : T(0);
        }
      } else {
        for (std::size_t i = begin; i < end; ++i) {
          const T g = dy[i];
          out[i] += pass(in[i]) ? g : T(0);
        }
      }
    });
  });
}

}  // namespace detail

template <class T>
basic_variable<T> relu(const basic_variable<T>& x) {
  return detail::pointwise_activation(
      x, [](T v) { return v < T(0) ? T(0) : v; }, [](T v) { return v > T(0); });
}

template <class T>
basic_variable<T> relu6(const basic_variable<T>& x) {
  return detail::pointwise_activation(
      x, [](T v) { return v < T(0) ? T(0) : (v > T(6) ? T(6) : v); }, [](T v) { return v > T(0) && v < T(6); });
}

}  // namespace xquant::nn::functional
