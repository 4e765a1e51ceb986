#pragma once
// optimizer: the base of sgd, adam and adamw.
//
// An optimizer holds the parameters it updates (the parameter_refs of
// module::parameters(), so every parameter has its dotted name) and, per parameter,
//
//   - zero or more state tensors ("slots") of the parameter's shape, e.g. SGD's momentum
//     buffer or Adam's two moment estimates, allocated (as zeros) in the constructor so
//     that step() never allocates;
//   - one counter: how many updates the parameter has received. Adam's bias correction
//     uses it (PyTorch keeps the same per-parameter "step"); SGD uses it to know whether
//     the momentum buffer holds anything yet (PyTorch's first step sets buf = g).
//
// state() and counters() expose both under stable names, "<param>.<slot>" and
// "<param>.step", as pointers into the optimizer, so a checkpoint (io/checkpoint.hpp)
// can save them and restore them in place. Together with lr() that is everything needed
// to resume training bit for bit; the hyper-parameters fixed at construction are
// reported by hyper_parameters() for the record.
//
// Semantics follow torch.optim: step() skips parameters without a gradient, and
// zero_grad() keeps the gradient buffers (zero-filled), like PyTorch's
// zero_grad(set_to_none=False), so a parameter that took no part in the last backward
// pass still gets a (zero-gradient) update: weight decay and momentum apply to it.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::optim {

/// A named per-parameter state tensor ("fc.weight.exp_avg"), pointing into the optimizer.
struct state_tensor_ref {
  std::string name;
  array<float>* value;
};

/// A named integer state ("fc.weight.step"), pointing into the optimizer.
struct state_counter_ref {
  std::string name;
  std::uint64_t* value;
};

namespace detail {

/// lr, weight decay, eps: finite and >= 0.
inline void check_non_negative(double v, const char* what) {
  check(std::isfinite(v) && v >= 0, what, " must be a finite number >= 0, got ", v);
}

/// momentum, betas: in [0, 1).
inline void check_unit_interval(double v, const char* what) {
  check(std::isfinite(v) && v >= 0 && v < 1, what, " must be in [0, 1), got ", v);
}

}  // namespace detail

class optimizer {
 public:
  virtual ~optimizer() = default;

  /// "sgd", "adam", "adamw". Checkpoints record it and refuse to load one kind's state
  /// into another.
  virtual std::string_view type() const = 0;

  /// One update of every parameter that has a gradient. Runs under no_grad and does not
  /// allocate.
  virtual void step() = 0;

  /// The current lr and the hyper-parameters fixed at construction (bools as 0 / 1), for
  /// logs and checkpoints.
  virtual std::vector<std::pair<std::string, double>> hyper_parameters() const = 0;

  /// Zero-fills every parameter's gradient, keeping the buffers. A parameter that has
  /// no gradient yet is left alone (variable::zero_grad would allocate an empty one).
  void zero_grad() {
    for (auto& p : params_) {
      if (p.var->grad().dimension() != 0) p.var->zero_grad();
    }
  }

  double lr() const { return lr_; }
  /// Sets the learning rate for the following steps (what a schedule calls every step).
  void set_lr(double lr) {
    detail::check_non_negative(lr, "learning rate");
    lr_ = lr;
  }

  const std::vector<nn::parameter_ref>& parameters() const { return params_; }

  /// How many updates parameter `i` has received.
  std::uint64_t step_count(std::size_t i) const { return steps_.at(i); }

  /// Every state tensor, named "<param>.<slot>", parameter-major in parameters() order.
  std::vector<state_tensor_ref> state() {
    std::vector<state_tensor_ref> out;
    out.reserve(params_.size() * slots_.size());
    for (std::size_t i = 0; i < params_.size(); ++i) {
      for (auto& s : slots_) out.push_back({params_[i].name + "." + s.name, &s.tensors[i]});
    }
    return out;
  }

  /// Every counter, named "<param>.step", in parameters() order.
  std::vector<state_counter_ref> counters() {
    std::vector<state_counter_ref> out;
    out.reserve(params_.size());
    for (std::size_t i = 0; i < params_.size(); ++i) out.push_back({params_[i].name + ".step", &steps_[i]});
    return out;
  }

 protected:
  /// Validates the parameter list: not empty, no null variable, no variable or name twice.
  optimizer(std::vector<nn::parameter_ref> params, double lr) : params_(std::move(params)), steps_() {
    set_lr(lr);
    check(!params_.empty(), "optimizer got an empty parameter list");
    std::unordered_set<const void*> nodes;
    std::unordered_set<std::string> names;
    for (const auto& p : params_) {
      check(p.var != nullptr, "optimizer: parameter '", p.name, "' is a null pointer");
      check(nodes.insert(p.var->node_ptr().get()).second, "optimizer: parameter '", p.name,
            "' appears twice in the parameter list");
      check(names.insert(p.name).second, "optimizer: two parameters are named '", p.name, "'");
    }
    steps_.assign(params_.size(), 0);
  }

  optimizer(const optimizer&) = delete;
  optimizer& operator=(const optimizer&) = delete;
  optimizer(optimizer&&) = default;
  optimizer& operator=(optimizer&&) = default;

  /// Adds a per-parameter state tensor named "<param>.<name>", zeros of each parameter's
  /// shape; returns its index for slot(). Called by constructors only.
  std::size_t add_slot(std::string name) {
    slot_storage s{std::move(name), {}};
    s.tensors.reserve(params_.size());
    for (const auto& p : params_) s.tensors.emplace_back(p.var->value().shape(), 0.0f);
    slots_.push_back(std::move(s));
    return slots_.size() - 1;
  }

  /// The state tensor `index` of parameter `i`; throws shape_error when the parameter's
  /// value no longer has the element count it had when the optimizer was built.
  array<float>& slot(std::size_t index, std::size_t i) {
    array<float>& t = slots_[index].tensors[i];
    if (t.size() != params_[i].var->size()) [[unlikely]] {  // (no check(): its arguments would allocate)
      xquant::detail::throw_error<shape_error>("optimizer: parameter '", params_[i].name, "' changed shape from ",
                                               shape_string(shape_of(t)), " to ", shape_string(params_[i].var->shape()),
                                               " after the optimizer was built");
    }
    return t;
  }

  /// Throws shape_error when parameter i's gradient does not match its value.
  void check_grad(std::size_t i) const {
    const autograd::variable& v = *params_[i].var;
    if (v.grad().shape() != v.value().shape()) [[unlikely]] {
      xquant::detail::throw_error<shape_error>("optimizer: parameter '", params_[i].name, "' has a gradient of shape ",
                                               shape_string(shape_of(v.grad())), " for a value of shape ",
                                               shape_string(v.shape()));
    }
  }

  std::vector<nn::parameter_ref> params_;
  std::vector<std::uint64_t> steps_;
  double lr_ = 0;

 private:
  struct slot_storage {
    std::string name;
    std::vector<array<float>> tensors;  // one per parameter
  };
  std::vector<slot_storage> slots_;
};

}  // namespace xquant::optim
