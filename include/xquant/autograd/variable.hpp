#pragma once
// Reverse-mode automatic differentiation: the variable and its graph node.
//
// A variable is a shared handle to a node holding a value and, once backward() has
// reached it, a gradient of the same shape. An op computes its output value eagerly and,
// when gradients are wanted, records a node with its inputs and a backward function
// (make_result below). backward() (graph.hpp) runs those functions once each, in
// reverse topological order. As in micrograd, an op's forward and backward live next to
// each other in the op's own function.
//
// Autograd knows nothing about quantization: fake quantization is just another op.
//
// The scalar type is a template parameter so that the same ops run in float32 for
// training and in float64 for the finite-difference gradient checks (gradcheck.hpp).

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"

namespace xquant::autograd {

template <class T>
struct node {
  array<T> value;
  array<T> grad;  ///< empty until a gradient reaches this node
  bool requires_grad = false;
  std::vector<std::shared_ptr<node>> inputs;
  /// Reads this node's grad and accumulates into its inputs' grads (input_grad()).
  std::function<void(node&)> backward;
};

/// Whether ops record a graph. Thread-local: evaluation on one thread does not switch
/// off training on another.
inline bool& grad_mode_flag() {
  thread_local bool enabled = true;
  return enabled;
}
inline bool grad_enabled() { return grad_mode_flag(); }

/// RAII: no graph is recorded while it lives (evaluation, optimizer updates).
class no_grad_guard {
 public:
  no_grad_guard() : previous_(grad_mode_flag()) { grad_mode_flag() = false; }
  ~no_grad_guard() { grad_mode_flag() = previous_; }
  no_grad_guard(const no_grad_guard&) = delete;
  no_grad_guard& operator=(const no_grad_guard&) = delete;

 private:
  bool previous_;
};

template <class T>
class basic_variable {
 public:
  using value_type = T;
  using node_type = node<T>;

  basic_variable() : node_(std::make_shared<node_type>()) {}
  explicit basic_variable(array<T> value, bool requires_grad = false) : node_(std::make_shared<node_type>()) {
    node_->value = std::move(value);
    node_->requires_grad = requires_grad;
  }
  explicit basic_variable(std::shared_ptr<node_type> n) : node_(std::move(n)) {}

  const array<T>& value() const { return node_->value; }
  /// Mutable value: for optimizers and initialisation, under no_grad.
  array<T>& value() { return node_->value; }
  const array<T>& grad() const { return node_->grad; }
  array<T>& grad() { return node_->grad; }
  bool has_grad() const { return node_->grad.size() == node_->value.size() && node_->grad.dimension() > 0; }
  bool requires_grad() const { return node_->requires_grad; }
  void set_requires_grad(bool on) { node_->requires_grad = on; }

  /// Sets the gradient to zero, keeping its buffer (no allocation per training step).
  void zero_grad() {
    if (node_->grad.size() == node_->value.size()) {
      std::fill(node_->grad.begin(), node_->grad.end(), T(0));
    } else {
      node_->grad = array<T>();
    }
  }

  shape_t shape() const { return shape_of(node_->value); }
  std::size_t size() const { return node_->value.size(); }
  const std::shared_ptr<node_type>& node_ptr() const { return node_; }

 private:
  std::shared_ptr<node_type> node_;
};

using variable = basic_variable<float>;

/// The gradient buffer of `n`, allocated as zeros of the value's shape on first use.
/// Backward functions accumulate into it with +=, which is what makes a variable used
/// twice in a graph receive the sum of both gradients.
template <class T>
array<T>& input_grad(node<T>& n) {
  if (n.grad.size() != n.value.size() || n.grad.shape() != n.value.shape()) {
    n.grad = array<T>(n.value.shape(), T(0));
  }
  return n.grad;
}

/// Where a backward function puts the gradient of one input (input_grad_target).
template <class T>
struct grad_target {
  T* data;
  bool fresh;  ///< the buffer is new and uninitialised: write every element (=), do not add
};

/// Like input_grad, for an op that writes every element of the input's gradient: when the
/// input has no gradient yet (the common case: a graph's interior nodes get their first
/// and often only contribution), the buffer is allocated without zeroing and `fresh` is
/// set, and the op stores instead of adding. That saves the zero fill and the read of the
/// zeros, two passes over a tensor as large as the activation. Otherwise it is input_grad.
template <class T>
grad_target<T> input_grad_target(node<T>& n) {
  if (n.grad.size() != n.value.size() || n.grad.shape() != n.value.shape()) {
    n.grad = array<T>(n.value.shape());  // xtensor leaves trivial element types uninitialised
    return {n.grad.data(), true};
  }
  return {n.grad.data(), false};
}

/// Records the result of an op. When grad mode is off or no input requires a gradient,
/// the result is a plain constant and `backward_fn` is dropped (no graph, no capture).
template <class T, class Backward>
basic_variable<T> make_result(array<T> value, std::vector<basic_variable<T>> inputs, Backward&& backward_fn) {
  bool needs = false;
  if (grad_enabled()) {
    for (const auto& in : inputs) needs = needs || in.requires_grad();
  }
  basic_variable<T> out(std::move(value), needs);
  if (needs) {
    auto& n = *out.node_ptr();
    n.inputs.reserve(inputs.size());
    for (auto& in : inputs) n.inputs.push_back(in.node_ptr());
    n.backward = std::forward<Backward>(backward_fn);
  }
  return out;
}

}  // namespace xquant::autograd
