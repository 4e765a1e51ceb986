#pragma once
// What the layer templates share for quantization-aware training.
//
// A layer templated on Q runs FP32 for Q = no_quant and QAT for Q = bundle<W, A>:
//
//   weights   weight_fake_quant<W>: per-channel (or per-tensor) min/max of the current
//             weights at every forward ("weight ranges keep following the weights"),
//             child "weight_fake_quant" (PyTorch's name);
//   outputs   fake_quant<A>: a moving-average min/max observer that can be frozen,
//             child "activation_post_process" (PyTorch's name), placed after the layer's
//             fused activation, never between the two.
//
// LSQ: a scheme with the lsq estimator tag (e.g. wa_bundle<4, 4, lsq>) gets a learned step
// size instead, under the same child names: lsq_weight_fake_quant<W> (one step size per
// output channel, parameter "weight_fake_quant.scale") and lsq_activation_fake_quant<A>
// (parameter "activation_post_process.scale", zero point from the first batch). Both
// initialise on their first training forward; freezing an LSQ activation quantizer stops
// its step-size updates (see lsq_fake_quant in fake_quant.hpp). Their step sizes are
// parameters, so an FP32 checkpoint lacks them: load it into the FP32 model and copy the
// tensors by name (examples/common/models.hpp's copy_state, used by examples/qat.cpp).
//
// For no_quant the quantizer members are empty structs: no children, no buffers, no
// work, so an FP32 model has exactly the parameters and buffers it always had, and an FP32
// checkpoint loads into the QAT model (whose quantizer buffers are extra; see
// io::load_options::allow_missing_buffers).
//
// Mixed precision is per layer: give a layer another bundle (e.g. w8a8 on the first and
// last layers of a w4a4 model); each layer's output quantizer defines the grid the next
// layer receives.
//
// Also here: quant_stub<Q> (the network input's quantizer), quantized_add<Q> (residual
// add, optional fused ReLU, then the output quantizer), quantized_concat<Q>, and the
// QAT switches over a whole model: freeze_observers(model) stops every activation
// observer (ranges frozen), freeze_bn(model) makes every conv_bn use and no longer update
// its running statistics.

#include <cstddef>
#include <functional>
#include <type_traits>
#include <vector>

#include "xquant/autograd/ops.hpp"
#include "xquant/core/error.hpp"
#include "xquant/nn/functional/shape_ops.hpp"
#include "xquant/nn/layers/activation.hpp"
#include "xquant/nn/layers/fake_quant.hpp"
#include "xquant/nn/layers/int8_spec.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/quant/scheme.hpp"

namespace xquant::nn {

namespace detail {

template <class Q>
struct is_bundle : std::false_type {};
template <class W, class A>
struct is_bundle<bundle<W, A>> : std::true_type {};

/// The quantizer member of a no_quant layer: nothing.
struct no_quantizer {
  no_quantizer() = default;
  explicit no_quantizer(std::size_t) {}
};

template <class Q>
struct quantizers {
  using weight = no_quantizer;
  using activation = no_quantizer;
};
template <quant_scheme S>
inline constexpr bool is_lsq_v = std::is_same_v<typename S::estimator, lsq>;

// A scheme with the lsq estimator tag gets a learned step size, any other the min/max
// quantizers; weights and activations choose independently.
template <class W, class A>
struct quantizers<bundle<W, A>> {
  using weight = std::conditional_t<is_lsq_v<W>, lsq_weight_fake_quant<W>, weight_fake_quant<W>>;
  using activation = std::conditional_t<is_lsq_v<A>, lsq_activation_fake_quant<A>, fake_quant<A>>;
};

}  // namespace detail

/// True for a bundle<W, A>: the layer fake-quantizes. False for no_quant (FP32).
template <class Q>
inline constexpr bool is_quantized_v = detail::is_bundle<Q>::value;

/// Q is a valid layer bundle: no_quant or bundle<W, A>.
template <class Q>
concept layer_bundle = std::is_same_v<Q, no_quant> || detail::is_bundle<Q>::value;

/// The weight quantizer module of a layer with bundle Q (empty for no_quant).
template <class Q>
using weight_quantizer_t = typename detail::quantizers<Q>::weight;
/// The activation quantizer module of a layer with bundle Q (empty for no_quant).
template <class Q>
using activation_quantizer_t = typename detail::quantizers<Q>::activation;

/// Weight quantizer channels for a weight of `out` output channels (axis 0).
template <class Q>
constexpr std::size_t weight_quant_channels(std::size_t out) {
  if constexpr (is_quantized_v<Q>) {
    using W = typename Q::weight;
    static_assert(!W::is_per_axis || W::axis == 0,
                  "xquant: layer weights are quantized per tensor or per output channel (per_axis<0>)");
    return W::is_per_axis ? out : 1;
  } else {
    return 1;
  }
}

/// Modules with QAT state implement this; containers implement it by forwarding to their
/// children with freeze_observers / freeze_bn below.
class qat_control {
 public:
  virtual ~qat_control() = default;
  /// Stops (true) or resumes (false) the activation observers: the ranges stay as they are.
  virtual void set_observers_frozen(bool) {}
  /// BatchNorm uses its running statistics and no longer updates them (true), or
  /// normalises with batch statistics in training mode again (false).
  virtual void set_bn_frozen(bool) {}
  /// Conversion (runtime::build_graph) tells each weighted layer the scale of the grid its
  /// input lies on. From then on the layer's evaluation-mode forward adds the bias the int8
  /// model adds, rounded to the int32 accumulator grid s_in * s_w[o] (exact_eval.hpp).
  virtual void set_input_scale(float) {}
};

/// Applies f to every qat_control reachable from m: m itself when it is one (it then
/// forwards to its own children), else the children of a sequential, recursively.
inline void for_each_qat_control(module& m, const std::function<void(qat_control&)>& f) {
  if (auto* q = dynamic_cast<qat_control*>(&m)) {
    f(*q);
    return;
  }
  if (auto* s = dynamic_cast<sequential*>(&m)) {
    for (std::size_t i = 0; i < s->size(); ++i) for_each_qat_control((*s)[i], f);
  }
}

/// Freezes (or unfreezes) every activation observer of the model (QAT's last epoch).
inline void freeze_observers(module& m, bool on = true) {
  for_each_qat_control(m, [on](qat_control& q) { q.set_observers_frozen(on); });
}
/// Freezes (or unfreezes) the BatchNorm statistics of every conv_bn of the model.
inline void freeze_bn(module& m, bool on = true) {
  for_each_qat_control(m, [on](qat_control& q) { q.set_bn_frozen(on); });
}

namespace detail {

/// Freezes (or unfreezes) an activation quantizer; nothing for no_quant.
template <class Q>
void freeze_quantizer(activation_quantizer_t<Q>& fq, bool on) {
  if constexpr (is_quantized_v<Q>) {
    if (on) fq.freeze();
    else fq.unfreeze();
  } else {
    (void)fq;
    (void)on;
  }
}

}  // namespace detail

/// The network input's quantizer (PyTorch's QuantStub + its observer): y = fake_quant<A>(x)
/// with an observed range; the identity for no_quant. Child "activation_post_process".
template <layer_bundle Q = no_quant>
class quant_stub : public module, public qat_control {
 public:
  quant_stub() {
    if constexpr (is_quantized_v<Q>) register_module("activation_post_process", fq_);
  }
  variable forward(const variable& x) override {
    if constexpr (is_quantized_v<Q>) {
      return fq_(x);
    } else {
      return x;
    }
  }
  void set_observers_frozen(bool on) override { detail::freeze_quantizer<Q>(fq_, on); }
  activation_quantizer_t<Q>& output_quantizer() { return fq_; }
  std::optional<layer_spec> int8_spec() override {
    if constexpr (!is_quantized_v<Q>) {
      return detail::fp32_layer("quant_stub");
    } else {
      return input_spec{detail::grid_of<typename Q::activation>(fq_.params())};
    }
  }

 private:
  [[no_unique_address]] activation_quantizer_t<Q> fq_;
};

/// Residual add: y = act(a + b), then the output quantizer (QAT). For no_quant it is
/// exactly autograd::add followed by the activation. The inputs are the outputs of
/// quantized layers, so the integer kernel sees two quantized tensors and requantizes
/// the sum to this module's output grid. Binary: call add(a, b) or (a, b); the unary
/// forward() throws.
template <layer_bundle Q = no_quant>
class quantized_add : public module, public qat_control {
 public:
  explicit quantized_add(activation act = activation::none) : act_(act) {
    if constexpr (is_quantized_v<Q>) register_module("activation_post_process", fq_);
  }

  variable add(const variable& a, const variable& b) {
    tracer* t = active_tracer();
    if (t != nullptr && t->recording()) return traced_call(*t, {a, b}, [&] { return compute(a, b); });
    return compute(a, b);
  }
  variable operator()(const variable& a, const variable& b) { return add(a, b); }
  variable forward(const variable&) override {
    throw value_error("quantized_add takes two inputs: call add(a, b)");
  }
  std::optional<layer_spec> int8_spec() override {
    if constexpr (!is_quantized_v<Q>) {
      return detail::fp32_layer("quantized_add");
    } else {
      return add_spec{act_, detail::grid_of<typename Q::activation>(fq_.params())};
    }
  }

  void set_observers_frozen(bool on) override { detail::freeze_quantizer<Q>(fq_, on); }
  activation act() const { return act_; }
  activation_quantizer_t<Q>& output_quantizer() { return fq_; }

 private:
  variable compute(const variable& a, const variable& b) {
    variable y = apply_activation(act_, autograd::add(a, b));
    if constexpr (is_quantized_v<Q>) {
      return fq_(y);
    } else {
      return y;
    }
  }

  activation act_;
  [[no_unique_address]] activation_quantizer_t<Q> fq_;
};

/// Concatenation along the channels, then the output quantizer (QAT): the integer kernel
/// requantizes every input to one common output grid.
template <layer_bundle Q = no_quant>
class quantized_concat : public module, public qat_control {
 public:
  quantized_concat() {
    if constexpr (is_quantized_v<Q>) register_module("activation_post_process", fq_);
  }

  variable concat(const std::vector<variable>& inputs) {
    tracer* t = active_tracer();
    if (t != nullptr && t->recording()) return traced_call(*t, inputs, [&] { return compute(inputs); });
    return compute(inputs);
  }
  std::optional<layer_spec> int8_spec() override {
    if constexpr (!is_quantized_v<Q>) {
      return detail::fp32_layer("quantized_concat");
    } else {
      return concat_spec{detail::grid_of<typename Q::activation>(fq_.params())};
    }
  }
  variable operator()(const std::vector<variable>& inputs) { return concat(inputs); }
  /// One input: the identity concatenation (quantized).
  variable forward(const variable& x) override { return concat({x}); }

  void set_observers_frozen(bool on) override { detail::freeze_quantizer<Q>(fq_, on); }
  activation_quantizer_t<Q>& output_quantizer() { return fq_; }

 private:
  variable compute(const std::vector<variable>& inputs) {
    variable y = functional::concat(inputs);
    if constexpr (is_quantized_v<Q>) {
      return fq_(y);
    } else {
      return y;
    }
  }

  [[no_unique_address]] activation_quantizer_t<Q> fq_;
};

}  // namespace xquant::nn
