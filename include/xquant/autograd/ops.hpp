#pragma once
// Generic differentiable ops on whole tensors: the pieces every model needs besides its
// layers (which live in nn/functional). Elementwise ops require equal shapes: no
// broadcasting, so a shape mistake is an error instead of a silent expansion.

#include <algorithm>
#include <cstddef>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/parallel.hpp"

namespace xquant::autograd {

namespace detail {
template <class T>
void require_same_shape(const basic_variable<T>& a, const basic_variable<T>& b, const char* op) {
  check<shape_error>(a.value().shape() == b.value().shape(), op, ": shapes ", shape_string(a.shape()),
                     " and ", shape_string(b.shape()), " differ");
}
}  // namespace detail

/// a + b (same shape). The residual add of ResNet and MobileNet blocks. Both passes run in
/// parallel chunks (core/parallel.hpp: parallel_elementwise).
template <class T>
basic_variable<T> add(const basic_variable<T>& a, const basic_variable<T>& b) {
  detail::require_same_shape(a, b, "add");
  array<T> out(a.value().shape());
  const T* pa = a.value().data();
  const T* pb = b.value().data();
  T* po = out.data();
  parallel_elementwise(out.size(), [pa, pb, po](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) po[i] = pa[i] + pb[i];
  });
  return make_result<T>(std::move(out), {a, b}, [](node<T>& n) {
    for (auto& in : n.inputs) {  // sequential: a and b may be the same node
      if (!in->requires_grad) continue;
      const grad_target<T> g = input_grad_target(*in);
      const T* go = n.grad.data();
      parallel_elementwise(n.grad.size(), [g, go](std::size_t begin, std::size_t end) {
        if (g.fresh) {
          std::copy(go + begin, go + end, g.data + begin);
        } else {
          for (std::size_t i = begin; i < end; ++i) g.data[i] += go[i];
        }
      });
    }
  });
}

/// a * b elementwise (same shape).
template <class T>
basic_variable<T> mul(const basic_variable<T>& a, const basic_variable<T>& b) {
  detail::require_same_shape(a, b, "mul");
  array<T> out(a.value().shape());
  for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] = a.value().data()[i] * b.value().data()[i];
  return make_result<T>(std::move(out), {a, b}, [](node<T>& n) {
    node<T>& x = *n.inputs[0];
    node<T>& y = *n.inputs[1];
    const T* go = n.grad.data();
    if (x.requires_grad) {
      T* g = input_grad(x).data();
      for (std::size_t i = 0; i < n.grad.size(); ++i) g[i] += go[i] * y.value.data()[i];
    }
    if (y.requires_grad) {
      T* g = input_grad(y).data();
      for (std::size_t i = 0; i < n.grad.size(); ++i) g[i] += go[i] * x.value.data()[i];
    }
  });
}

/// The sum of all elements, as a one-element tensor.
template <class T>
basic_variable<T> sum(const basic_variable<T>& a) {
  T total = 0;
  for (T v : a.value()) total += v;
  array<T> out({1}, total);
  return make_result<T>(std::move(out), {a}, [](node<T>& n) {
    T* g = input_grad(*n.inputs[0]).data();
    const T go = n.grad.data()[0];
    for (std::size_t i = 0; i < n.inputs[0]->value.size(); ++i) g[i] += go;
  });
}

/// The same data seen with another shape of equal element count (row-major).
template <class T>
basic_variable<T> reshape(const basic_variable<T>& a, const shape_t& shape) {
  check<shape_error>(element_count(shape) == a.size(), "reshape: cannot view ", shape_string(a.shape()),
                     " as ", shape_string(shape));
  array<T> out(shape);
  std::copy(a.value().begin(), a.value().end(), out.begin());
  return make_result<T>(std::move(out), {a}, [](node<T>& n) {
    const grad_target<T> g = input_grad_target(*n.inputs[0]);
    if (g.fresh) {
      std::copy(n.grad.begin(), n.grad.end(), g.data);
    } else {
      for (std::size_t i = 0; i < n.grad.size(); ++i) g.data[i] += n.grad.data()[i];
    }
  });
}

}  // namespace xquant::autograd
