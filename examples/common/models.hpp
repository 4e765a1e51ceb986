#pragma once
// The three reference networks of shared/reference-models.md, in xquant.
//
// Each is templated on the quantization bundle Q (no_quant for FP32 training), so the
// same definition is trained in FP32, fine-tuned with QAT and converted to int8.
// benchmarks/torch_models.py defines the same networks in PyTorch for comparisons.
//
// QAT graph (Q = bundle<W, A>): the input goes through a quant stub (child "quant"),
// every conv_bn folds its BN and quantizes after its activation, ReLUs that follow a
// dense layer are fused into it (the sequential keeps an nn::identity in the old slot so
// that the indices, and the parameter names, are those of the FP32 model), residual adds
// are nn::quantized_add (ReLU fused for ResNet), and global average pooling quantizes its
// output. For Q = no_quant the graph is the FP32 one, with the same parameter and buffer
// names, so an FP32 checkpoint loads into the QAT model with
// io::load_options{.allow_missing_buffers = true} (the quantizer buffers are new).
//
// Mixed precision: the second template argument, Qedge (default Q), is the bundle of the
// input stub, the first convolution and the last dense layer, e.g. cnn<w4a4, w8a8> keeps
// the network edges at 8 bits. A finer split is a matter of giving other layers other
// bundles in the same way; every layer's output quantizer defines the grid of the next
// layer's input.

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "xquant/autograd/ops.hpp"
#include "xquant/nn/layers.hpp"
#include "xquant/nn/layers/conv_bn.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::examples {

using nn::activation;
using nn::variable;

/// A sequential model with a quant stub on its input (QAT) and the QAT switches
/// (freeze_observers / freeze_bn) forwarded to its children.
template <class Qin>
class quantized_sequential : public nn::sequential, public nn::qat_control {
 public:
  variable forward(const variable& x) override {
    if constexpr (nn::is_quantized_v<Qin>) {
      return nn::sequential::forward(stub_(x));
    } else {
      return nn::sequential::forward(x);
    }
  }
  void set_observers_frozen(bool on) override {
    stub_.set_observers_frozen(on);
    for (std::size_t i = 0; i < size(); ++i) nn::freeze_observers((*this)[i], on);
  }
  void set_bn_frozen(bool on) override {
    for (std::size_t i = 0; i < size(); ++i) nn::freeze_bn((*this)[i], on);
  }
  nn::quant_stub<Qin>& quant_stub() { return stub_; }

 protected:
  /// Call at the end of the derived constructor: the stub's buffers come after the layers'.
  void register_stub() {
    if constexpr (nn::is_quantized_v<Qin>) register_module("quant", stub_);
  }

 private:
  nn::quant_stub<Qin> stub_;
};

/// cnn: conv 3x3 1->32, BN, ReLU, maxpool; conv 3x3 32->64, BN, ReLU, maxpool;
/// dense 3136->128, ReLU; dense 128->10.
template <class Q = no_quant, class Qedge = Q>
class cnn : public quantized_sequential<Qedge> {
 public:
  cnn() {
    this->template emplace<nn::conv_bn<Qedge>>(nn::conv_bn_config{.in = 1, .out = 32, .kernel = 3, .act = activation::relu});
    this->template emplace<nn::max_pool2d>(2);
    this->template emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 32, .out = 64, .kernel = 3, .act = activation::relu});
    this->template emplace<nn::max_pool2d>(2);
    this->template emplace<nn::flatten>();
    if constexpr (nn::is_quantized_v<Q>) {
      // "dense, ReLU" as one layer whose quantizer follows the ReLU; "6" stays a slot.
      this->template emplace<nn::linear<Q>>(nn::linear_config{.in = 3136, .out = 128, .act = activation::relu});
      this->template emplace<nn::identity>();
    } else {
      this->template emplace<nn::linear<Q>>(nn::linear_config{.in = 3136, .out = 128});
      this->template emplace<nn::relu>();
    }
    this->template emplace<nn::linear<Qedge>>(nn::linear_config{.in = 128, .out = 10});
    this->register_stub();
  }
};

/// MobileNetV2 inverted residual: [1x1 expand, BN, ReLU6] (t > 1), 3x3 depthwise stride s,
/// BN, ReLU6, 1x1 project, BN (linear), + input when s == 1 and cin == cout.
template <class Q = no_quant>
class inverted_residual : public nn::module, public nn::qat_control {
 public:
  inverted_residual(std::size_t cin, std::size_t cout, std::size_t t, std::size_t stride)
      : residual_(stride == 1 && cin == cout) {
    const std::size_t hidden = cin * t;
    if (t != 1) {
      body_.emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = cin, .out = hidden, .kernel = 1, .act = activation::relu6});
    }
    body_.emplace<nn::conv_bn<Q>>(nn::conv_bn_config{
        .in = hidden, .out = hidden, .kernel = 3, .stride = stride, .groups = hidden, .act = activation::relu6});
    body_.emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = hidden, .out = cout, .kernel = 1});
    register_module("body", body_);
    if (residual_) register_module("add", add_);
  }

  variable forward(const variable& x) override {
    variable y = body_(x);
    return residual_ ? add_(x, y) : y;
  }

  void set_observers_frozen(bool on) override {
    nn::freeze_observers(body_, on);
    add_.set_observers_frozen(on);
  }
  void set_bn_frozen(bool on) override { nn::freeze_bn(body_, on); }

  bool has_residual() const { return residual_; }
  nn::sequential& body() { return body_; }

 private:
  nn::sequential body_;
  bool residual_;
  nn::quantized_add<Q> add_;  // x + y, then the output quantizer (QAT)
};

template <class Q = no_quant, class Qedge = Q>
class mobilenet : public quantized_sequential<Qedge> {
 public:
  mobilenet() {
    this->template emplace<nn::conv_bn<Qedge>>(nn::conv_bn_config{.in = 1, .out = 16, .kernel = 3, .act = activation::relu6});
    this->template emplace<inverted_residual<Q>>(16, 16, 1, 1);
    this->template emplace<inverted_residual<Q>>(16, 24, 4, 2);
    this->template emplace<inverted_residual<Q>>(24, 24, 4, 1);
    this->template emplace<inverted_residual<Q>>(24, 32, 4, 2);
    this->template emplace<inverted_residual<Q>>(32, 32, 4, 1);
    this->template emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 32, .out = 128, .kernel = 1, .act = activation::relu6});
    this->template emplace<nn::global_avg_pool<Q>>();
    this->template emplace<nn::linear<Qedge>>(nn::linear_config{.in = 128, .out = 10});
    this->register_stub();
  }
};

/// ResNet basic block: conv 3x3 s, BN, ReLU, conv 3x3, BN, + shortcut, ReLU; the shortcut
/// is the identity, or conv 1x1 s + BN when the shape changes.
template <class Q = no_quant>
class basic_block : public nn::module, public nn::qat_control {
 public:
  basic_block(std::size_t cin, std::size_t cout, std::size_t stride)
      : conv1_({.in = cin, .out = cout, .kernel = 3, .stride = stride, .act = activation::relu}),
        conv2_({.in = cout, .out = cout, .kernel = 3}),
        add_(activation::relu) {
    register_module("conv1", conv1_);
    register_module("conv2", conv2_);
    if (stride != 1 || cin != cout) {
      shortcut_ = std::make_unique<nn::conv_bn<Q>>(nn::conv_bn_config{.in = cin, .out = cout, .kernel = 1, .stride = stride});
      register_module("shortcut", *shortcut_);
    }
    register_module("add", add_);
  }

  variable forward(const variable& x) override {
    const variable y = conv2_(conv1_(x));
    return add_(y, shortcut_ ? (*shortcut_)(x) : x);  // add, ReLU, then the quantizer (QAT)
  }

  void set_observers_frozen(bool on) override {
    for (nn::qat_control* m : members()) m->set_observers_frozen(on);
  }
  void set_bn_frozen(bool on) override {
    for (nn::qat_control* m : members()) m->set_bn_frozen(on);
  }

  nn::conv_bn<Q>& conv1() { return conv1_; }
  nn::conv_bn<Q>& conv2() { return conv2_; }
  nn::conv_bn<Q>* shortcut() { return shortcut_.get(); }
  nn::quantized_add<Q>& add() { return add_; }

 private:
  std::vector<nn::qat_control*> members() {
    std::vector<nn::qat_control*> out{&conv1_, &conv2_, &add_};
    if (shortcut_) out.push_back(shortcut_.get());
    return out;
  }

  nn::conv_bn<Q> conv1_, conv2_;
  std::unique_ptr<nn::conv_bn<Q>> shortcut_;
  nn::quantized_add<Q> add_;  // y + shortcut, ReLU, then the output quantizer (QAT)
};

template <class Q = no_quant, class Qedge = Q>
class resnet : public quantized_sequential<Qedge> {
 public:
  resnet() {
    this->template emplace<nn::conv_bn<Qedge>>(nn::conv_bn_config{.in = 1, .out = 16, .kernel = 3, .act = activation::relu});
    this->template emplace<basic_block<Q>>(16, 16, 1);
    this->template emplace<basic_block<Q>>(16, 32, 2);
    this->template emplace<basic_block<Q>>(32, 64, 2);
    this->template emplace<nn::global_avg_pool<Q>>();
    this->template emplace<nn::linear<Qedge>>(nn::linear_config{.in = 64, .out = 10});
    this->register_stub();
  }
};

inline const char* const model_names[] = {"cnn", "mobilenet", "resnet"};

/// Copies every parameter and buffer of `from` into the tensor of the same name in `to`:
/// an FP32 model into its QAT version, whose names are the FP32 names plus the
/// quantizers'. (io::load_checkpoint can leave buffers missing but not parameters, and
/// LSQ step sizes are parameters, so QAT loads an FP32 checkpoint into the FP32 model and
/// copies from there.) Returns the names of `to`'s tensors that `from` lacks, which keep
/// their values. Throws value_error, with `to` unchanged, when `to` lacks one of `from`'s
/// tensors or has it with another shape.
inline std::vector<std::string> copy_state(nn::module& from, nn::module& to) {
  std::map<std::string, array<float>*> targets;
  for (auto& p : to.parameters()) targets[p.name] = &p.var->value();
  for (auto& b : to.buffers()) targets[b.name] = b.value;
  std::vector<std::pair<const array<float>*, array<float>*>> copies;
  auto match = [&](const std::string& name, const array<float>& source) {
    const auto it = targets.find(name);
    check(it != targets.end() && it->second->shape() == source.shape(), "copy_state: the target model has no tensor '",
          name, "' of shape ", shape_string(shape_of(source)));
    copies.emplace_back(&source, it->second);
    targets.erase(it);
  };
  for (auto& p : from.parameters()) match(p.name, p.var->value());
  for (auto& b : from.buffers()) match(b.name, *b.value);
  for (const auto& [source, target] : copies) std::copy(source->begin(), source->end(), target->begin());
  std::vector<std::string> missing;
  for (const auto& t : targets) missing.push_back(t.first);
  return missing;
}

/// A reference model by name, initialised from `seed` as PyTorch's defaults would.
template <class Q = no_quant, class Qedge = Q>
std::unique_ptr<nn::module> make_model(const std::string& name, unsigned seed) {
  std::unique_ptr<nn::module> m;
  if (name == "cnn") m = std::make_unique<cnn<Q, Qedge>>();
  else if (name == "mobilenet") m = std::make_unique<mobilenet<Q, Qedge>>();
  else if (name == "resnet") m = std::make_unique<resnet<Q, Qedge>>();
  else throw value_error("xquant: unknown model '" + name + "' (cnn, mobilenet, resnet)");
  std::mt19937 rng(seed);
  m->reset_parameters(rng);
  return m;
}

/// Calls f.template operator()<Q, Qedge>() for the W/A bundle named `bundle` (w8a8, w4a8,
/// w4a4) with gradient estimator E; edge8 keeps the first and last layers (Qedge) at w8a8.
/// The examples' --bundle / --edge8 options: strings dispatched to a fixed set of types.
template <class E, class F>
int with_wa_bundle(const std::string& bundle, bool edge8, F&& f) {
  using b88 = wa_bundle<8, 8, E>;
  using b48 = wa_bundle<4, 8, E>;
  using b44 = wa_bundle<4, 4, E>;
  if (bundle == "w8a8") return f.template operator()<b88, b88>();
  if (bundle == "w4a8") return edge8 ? f.template operator()<b48, b88>() : f.template operator()<b48, b48>();
  if (bundle == "w4a4") return edge8 ? f.template operator()<b44, b88>() : f.template operator()<b44, b44>();
  throw value_error("unknown --bundle '" + bundle + "' (w8a8, w4a8, w4a4)");
}

}  // namespace xquant::examples
