#pragma once
// Classification loss and accuracy.
//
//   softmax_cross_entropy(logits [N, K], labels) = mean_n ( logsumexp(logits[n]) - logits[n][label_n] )
//   computed stably: logsumexp(z) = max(z) + log(sum exp(z - max(z))).
//   d loss / d logits[n][k] = (softmax(logits[n])[k] - [k == label_n]) / N
// The result is a one-element tensor, like autograd::sum. Labels outside [0, K) throw
// value_error. count_correct is not differentiable: the number of rows whose first
// maximum is at the label.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/nn/functional/detail/common.hpp"

namespace xquant::nn::functional {

using autograd::basic_variable;

namespace detail {
template <class T>
void check_logits_labels(const basic_variable<T>& logits, std::span<const int> labels, const char* op) {
  require_rank(logits, 2, op);
  const std::size_t n = logits.value().shape()[0], k = logits.value().shape()[1];
  check<shape_error>(n > 0 && k > 0, op, ": empty logits ", shape_string(logits.shape()));
  check<shape_error>(labels.size() == n, op, ": ", labels.size(), " labels for ", n, " rows of logits");
  for (std::size_t i = 0; i < n; ++i) {
    check<value_error>(labels[i] >= 0 && static_cast<std::size_t>(labels[i]) < k, op, ": label ", labels[i],
                       " of row ", i, " is outside [0, ", k, ")");
  }
}
}  // namespace detail

template <class T>
basic_variable<T> softmax_cross_entropy(const basic_variable<T>& logits, std::span<const int> labels) {
  detail::check_logits_labels(logits, labels, "softmax_cross_entropy: logits [N, K]");
  const std::size_t n = logits.value().shape()[0], k = logits.value().shape()[1];
  std::vector<T> probs(n * k);  // softmax, kept for the backward
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* z = logits.value().data() + i * k;
    T* p = probs.data() + i * k;
    T m = z[0];
    for (std::size_t j = 1; j < k; ++j) m = z[j] > m ? z[j] : m;
    double s = 0;
    for (std::size_t j = 0; j < k; ++j) {
      p[j] = std::exp(z[j] - m);
      s += p[j];
    }
    const double lse = double(m) + std::log(s);
    for (std::size_t j = 0; j < k; ++j) p[j] = T(double(p[j]) / s);
    total += lse - double(z[labels[i]]);
  }
  array<T> loss({1}, T(total / double(n)));
  std::vector<int> saved(labels.begin(), labels.end());
  return autograd::make_result<T>(
      std::move(loss), {logits}, [n, k, probs = std::move(probs), saved = std::move(saved)](autograd::node<T>& node) {
        const autograd::grad_target<T> dz = autograd::input_grad_target(*node.inputs[0]);
        if (dz.fresh) std::fill_n(dz.data, n * k, T(0));
        const T scale = node.grad.data()[0] / T(n);
        for (std::size_t i = 0; i < n; ++i) {
          for (std::size_t j = 0; j < k; ++j) dz.data[i * k + j] += scale * probs[i * k + j];
          dz.data[i * k + static_cast<std::size_t>(saved[i])] -= scale;
        }
      });
}

/// The number of rows of `logits` whose (first) maximum is at the row's label.
template <class T>
std::size_t count_correct(const basic_variable<T>& logits, std::span<const int> labels) {
  detail::check_logits_labels(logits, labels, "count_correct: logits [N, K]");
  const std::size_t n = logits.value().shape()[0], k = logits.value().shape()[1];
  std::size_t correct = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* z = logits.value().data() + i * k;
    std::size_t best = 0;
    for (std::size_t j = 1; j < k; ++j) best = z[j] > z[best] ? j : best;
    correct += best == static_cast<std::size_t>(labels[i]) ? 1 : 0;
  }
  return correct;
}

}  // namespace xquant::nn::functional
