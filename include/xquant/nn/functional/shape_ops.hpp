#pragma once
// Shape ops: flatten and concat along channels.
//
//   flatten: [N, d1, d2, ...] -> [N, d1 * d2 * ...] (row-major, so the data order is kept)
//   concat:  inputs [N, C_i, rest...] -> [N, sum C_i, rest...]; every other axis must agree

#include <algorithm>
#include <cstddef>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/nn/functional/detail/common.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

template <class T>
basic_variable<T> flatten(const basic_variable<T>& x) {
  check<shape_error>(x.value().dimension() >= 1, "flatten: the input needs a batch axis, got a scalar");
  const std::size_t n = x.value().shape()[0];
  const std::size_t rest = n == 0 ? 0 : x.size() / n;
  array<T> y(shape_t{n, rest});
  std::copy(x.value().data(), x.value().data() + x.size(), y.data());
  return autograd::make_result<T>(std::move(y), {x}, [](autograd::node<T>& node) {
    const autograd::grad_target<T> dx = autograd::input_grad_target(*node.inputs[0]);
    const T* dy = node.grad.data();
    if (dx.fresh) {
      std::copy(dy, dy + node.grad.size(), dx.data);
    } else {
      for (std::size_t i = 0; i < node.grad.size(); ++i) dx.data[i] += dy[i];
    }
  });
}

/// Concatenation along axis 1 (channels) of one or more inputs.
template <class T>
basic_variable<T> concat(const std::vector<basic_variable<T>>& inputs) {
  check<shape_error>(!inputs.empty(), "concat: no inputs");
  const shape_t first = inputs[0].shape();
  check<shape_error>(first.size() >= 2, "concat: inputs need rank >= 2 [N, C, ...], got shape ", shape_string(first));
  shape_t out_shape = first;
  out_shape[1] = 0;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    shape_t s = inputs[k].shape();
    bool same = s.size() == first.size();
    for (std::size_t d = 0; same && d < s.size(); ++d) same = d == 1 || s[d] == first[d];
    check<shape_error>(same, "concat: input ", k, " has shape ", shape_string(s), ", which differs from input 0's ",
                       shape_string(first), " outside axis 1");
    out_shape[1] += s[1];
  }
  const std::size_t n = first[0];
  const std::size_t inner = first.size() > 2 ? element_count(std::span(first).subspan(2)) : 1;
  array<T> y(out_shape);
  // Image i of input k occupies [offset_k, offset_k + C_k * inner) of output image i.
  std::vector<std::size_t> widths;
  for (const auto& in : inputs) widths.push_back(in.value().shape()[1] * inner);
  const std::size_t row = out_shape[1] * inner;
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t offset = 0;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      const T* src = inputs[k].value().data() + i * widths[k];
      std::copy(src, src + widths[k], y.data() + i * row + offset);
      offset += widths[k];
    }
  }
  return autograd::make_result<T>(std::move(y), inputs, [n, row, widths](autograd::node<T>& node) {
    std::size_t offset = 0;
    for (std::size_t k = 0; k < node.inputs.size(); ++k) {
      if (node.inputs[k]->requires_grad) {
        const autograd::grad_target<T> dx = autograd::input_grad_target(*node.inputs[k]);
        for (std::size_t i = 0; i < n; ++i) {
          const T* dy = node.grad.data() + i * row + offset;
          T* out = dx.data + i * widths[k];
          if (dx.fresh) {
            std::copy(dy, dy + widths[k], out);
          } else {
            for (std::size_t j = 0; j < widths[k]; ++j) out[j] += dy[j];
          }
        }
      }
      offset += widths[k];
    }
  });
}

}  // namespace xquant::nn::functional
