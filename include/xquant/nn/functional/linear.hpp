#pragma once
// linear: y = x W^T + b, as PyTorch's nn.functional.linear.
//
//   x [N, in], w [out, in], bias [out] or none  ->  y [N, out]
//   forward  y  = x * W^T            (one GEMM)
//   backward dx += dy * W,  dW += dy^T * x,  db += column sums of dy
//
// The GEMMs are single calls over the whole batch, so the sums over the batch are done
// inside kernels::gemm (deterministic for a given thread count if the GEMM is). The bias
// gradient sums rows in batch order.

#include <cstddef>
#include <type_traits>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/kernels/gemm.hpp"
#include "xquant/nn/functional/detail/common.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

template <class T>
basic_variable<T> linear(const basic_variable<T>& x, const basic_variable<T>& w,
                         const std::type_identity_t<basic_variable<T>>* bias = nullptr) {
  detail::require_rank(x, 2, "linear: input [N, in]");
  detail::require_rank(w, 2, "linear: weight [out, in]");
  detail::require_batch(x, "linear");
  const std::size_t n = x.value().shape()[0], in = x.value().shape()[1], out = w.value().shape()[0];
  check<shape_error>(w.value().shape()[1] == in, "linear: the input ", shape_string(x.shape()), " has ", in,
                     " features but the weight ", shape_string(w.shape()), " expects ", w.value().shape()[1]);
  if (bias) {
    check<shape_error>(bias->value().dimension() == 1 && bias->size() == out, "linear: bias must have shape [", out,
                       "], got ", shape_string(bias->shape()));
  }
  array<T> y(shape_t{n, out});
  kernels::gemm<T>(false, true, n, out, in, T(1), x.value().data(), in, w.value().data(), in, T(0), y.data(), out);
  if (bias) {
    const T* b = bias->value().data();
    for (std::size_t i = 0; i < n; ++i) {
      T* row = y.data() + i * out;
      for (std::size_t j = 0; j < out; ++j) row[j] += b[j];
    }
  }
  std::vector<basic_variable<T>> inputs{x, w};
  if (bias) inputs.push_back(*bias);
  return autograd::make_result<T>(std::move(y), std::move(inputs), [n, in, out](autograd::node<T>& node) {
    autograd::node<T>& xn = *node.inputs[0];
    autograd::node<T>& wn = *node.inputs[1];
    const T* dy = node.grad.data();
    if (xn.requires_grad) {
      const autograd::grad_target<T> dx = autograd::input_grad_target(xn);
      kernels::gemm<T>(false, false, n, in, out, T(1), dy, out, wn.value.data(), in, dx.fresh ? T(0) : T(1), dx.data,
                       in);
    }
    if (wn.requires_grad) {
      kernels::gemm<T>(true, false, out, in, n, T(1), dy, out, xn.value.data(), in, T(1),
                       autograd::input_grad(wn).data(), in);
    }
    if (node.inputs.size() > 2 && node.inputs[2]->requires_grad) {
      T* db = autograd::input_grad(*node.inputs[2]).data();
      for (std::size_t i = 0; i < n; ++i) {
        const T* row = dy + i * out;
        for (std::size_t j = 0; j < out; ++j) db[j] += row[j];
      }
    }
  });
}

}  // namespace xquant::nn::functional
