#pragma once
// module: the base of every layer and model.
//
// A module owns its parameters (trainable variables), its buffers (state that is saved
// but not trained, e.g. BatchNorm running statistics) and its child modules, and
// registers each under a name. parameters() and buffers() walk the tree and return
// dotted names ("features.0.weight", "block1.bn2.running_mean") — the names checkpoints,
// optimizers and conversion use. Modules are neither copyable nor movable, because the
// registry holds pointers to members; models keep children in members or unique_ptrs.
//
// Layer templates take the quantization bundle as a template parameter (no_quant for
// FP32) and derive from module; the forward signature is the same for all of them.

#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/error.hpp"
#include "xquant/nn/trace.hpp"

namespace xquant::nn {

using autograd::variable;

struct parameter_ref {
  std::string name;
  variable* var;
};

struct buffer_ref {
  std::string name;
  array<float>* value;
};

class module {
 public:
  module() = default;
  virtual ~module() = default;
  module(const module&) = delete;
  module& operator=(const module&) = delete;
  module(module&&) = delete;
  module& operator=(module&&) = delete;

  virtual variable forward(const variable& x) = 0;
  /// forward(x); while a tracer is active (int8 conversion) a leaf layer also records itself.
  variable operator()(const variable& x) {
    tracer* t = active_tracer();
    if (t == nullptr || !t->recording()) return forward(x);
    return traced_call(*t, {x}, [&] { return forward(x); });
  }

  /// The layer's integer form for int8 conversion (trace.hpp). Leaf layers override it;
  /// containers return nullopt and their children record themselves.
  virtual std::optional<layer_spec> int8_spec() { return std::nullopt; }

  /// Training mode (batch statistics in BatchNorm, observers updating) or evaluation.
  void train(bool on = true) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  std::vector<parameter_ref> parameters() {
    std::vector<parameter_ref> out;
    collect_parameters("", out);
    return out;
  }
  std::vector<buffer_ref> buffers() {
    std::vector<buffer_ref> out;
    collect_buffers("", out);
    return out;
  }
  void zero_grad() {
    for (auto& p : parameters()) p.var->zero_grad();
  }
  /// Initialises the parameters and buffers as PyTorch's defaults do, drawing from `rng`.
  /// The base version visits the children in registration order, so one seed
  /// initialises a whole model reproducibly; layers with parameters override it.
  virtual void reset_parameters(std::mt19937& rng) {
    for (auto& [name, child] : children_) child->reset_parameters(rng);
  }
  std::size_t parameter_count() {
    std::size_t n = 0;
    for (auto& p : parameters()) n += p.var->size();
    return n;
  }

 /// Every module of the tree with its dotted name ("" for this one), parents first.
  std::vector<std::pair<std::string, const module*>> named_modules() const {
    std::vector<std::pair<std::string, const module*>> out;
    collect_modules("", out);
    return out;
  }

 protected:
  /// Runs `run` (the layer's computation on `inputs`) and records it with the layer's spec;
  /// a container just runs. Layers with several inputs call it from their own entry point.
  template <class Run>
  variable traced_call(tracer& t, std::vector<variable> inputs, Run&& run) {
    std::optional<layer_spec> spec = int8_spec();
    if (!spec) return run();
    t.enter();
    variable y;
    try {
      y = run();
    } catch (...) {
      t.leave();
      throw;
    }
    t.leave();
    t.record({this, std::move(*spec), std::move(inputs), y});
    return y;
  }

  variable& register_parameter(std::string name, variable& v) {
    check_unique(name);
    v.set_requires_grad(true);
    params_.emplace_back(std::move(name), &v);
    return v;
  }
  array<float>& register_buffer(std::string name, array<float>& b) {
    check_unique(name);
    buffers_.emplace_back(std::move(name), &b);
    return b;
  }
  template <class M>
  M& register_module(std::string name, M& child) {
    check_unique(name);
    children_.emplace_back(std::move(name), &child);
    return child;
  }

 private:
  void check_unique(const std::string& name) const {
    check(!name.empty() && name.find('.') == std::string::npos, "module member name '", name,
          "' must be non-empty and contain no '.'");
    for (const auto& [n, p] : params_) check(n != name, "duplicate member name '", name, "'");
    for (const auto& [n, b] : buffers_) check(n != name, "duplicate member name '", name, "'");
    for (const auto& [n, c] : children_) check(n != name, "duplicate member name '", name, "'");
  }
  void collect_parameters(const std::string& prefix, std::vector<parameter_ref>& out) {
    for (auto& [name, v] : params_) out.push_back({prefix + name, v});
    for (auto& [name, child] : children_) child->collect_parameters(prefix + name + ".", out);
  }
  void collect_modules(const std::string& name, std::vector<std::pair<std::string, const module*>>& out) const {
    out.emplace_back(name, this);
    for (const auto& [child_name, child] : children_) {
      child->collect_modules(name.empty() ? child_name : name + "." + child_name, out);
    }
  }
  void collect_buffers(const std::string& prefix, std::vector<buffer_ref>& out) {
    for (auto& [name, b] : buffers_) out.push_back({prefix + name, b});
    for (auto& [name, child] : children_) child->collect_buffers(prefix + name + ".", out);
  }

  bool training_ = true;
  std::vector<std::pair<std::string, variable*>> params_;
  std::vector<std::pair<std::string, array<float>*>> buffers_;
  std::vector<std::pair<std::string, module*>> children_;
};

/// Modules applied one after another; children are named "0", "1", ...
class sequential : public module {
 public:
  sequential() = default;

  template <class M, class... Args>
  M& emplace(Args&&... args) {
    auto child = std::make_unique<M>(std::forward<Args>(args)...);
    M& ref = *child;
    register_module(std::to_string(layers_.size()), ref);
    layers_.push_back(std::move(child));
    return ref;
  }

  variable forward(const variable& x) override {
    variable y = x;
    for (auto& layer : layers_) y = (*layer)(y);
    return y;
  }

  std::size_t size() const { return layers_.size(); }
  module& operator[](std::size_t i) { return *layers_.at(i); }

 private:
  std::vector<std::unique_ptr<module>> layers_;
};

}  // namespace xquant::nn
