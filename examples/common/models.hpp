#pragma once
// The three reference networks of shared/reference-models.md, in xquant.
//
// Each is templated on the quantization bundle Q (no_quant for FP32 training), so the
// same definition is trained in FP32, fine-tuned with QAT and converted to int8.
// benchmarks/torch_models.py defines the same networks in PyTorch for comparisons.

#include <memory>
#include <random>
#include <string>

#include "xquant/autograd/ops.hpp"
#include "xquant/nn/layers.hpp"
#include "xquant/nn/layers/conv_bn.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::examples {

using nn::activation;
using nn::variable;

/// cnn: conv 3x3 1->32, BN, ReLU, maxpool; conv 3x3 32->64, BN, ReLU, maxpool;
/// dense 3136->128, ReLU; dense 128->10.
template <class Q = no_quant>
class cnn : public nn::sequential {
 public:
  cnn() {
    emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 1, .out = 32, .kernel = 3, .act = activation::relu});
    emplace<nn::max_pool2d>(2);
    emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 32, .out = 64, .kernel = 3, .act = activation::relu});
    emplace<nn::max_pool2d>(2);
    emplace<nn::flatten>();
    emplace<nn::linear<Q>>(nn::linear_config{.in = 3136, .out = 128});
    emplace<nn::relu>();
    emplace<nn::linear<Q>>(nn::linear_config{.in = 128, .out = 10});
  }
};

/// MobileNetV2 inverted residual: [1x1 expand, BN, ReLU6] (t > 1), 3x3 depthwise stride s,
/// BN, ReLU6, 1x1 project, BN (linear), + input when s == 1 and cin == cout.
template <class Q = no_quant>
class inverted_residual : public nn::module {
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
  }

  variable forward(const variable& x) override {
    variable y = body_(x);
    return residual_ ? autograd::add(x, y) : y;
  }

  bool has_residual() const { return residual_; }
  nn::sequential& body() { return body_; }

 private:
  nn::sequential body_;
  bool residual_;
};

template <class Q = no_quant>
class mobilenet : public nn::sequential {
 public:
  mobilenet() {
    emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 1, .out = 16, .kernel = 3, .act = activation::relu6});
    emplace<inverted_residual<Q>>(16, 16, 1, 1);
    emplace<inverted_residual<Q>>(16, 24, 4, 2);
    emplace<inverted_residual<Q>>(24, 24, 4, 1);
    emplace<inverted_residual<Q>>(24, 32, 4, 2);
    emplace<inverted_residual<Q>>(32, 32, 4, 1);
    emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 32, .out = 128, .kernel = 1, .act = activation::relu6});
    emplace<nn::global_avg_pool>();
    emplace<nn::linear<Q>>(nn::linear_config{.in = 128, .out = 10});
  }
};

/// ResNet basic block: conv 3x3 s, BN, ReLU, conv 3x3, BN, + shortcut, ReLU; the shortcut
/// is the identity, or conv 1x1 s + BN when the shape changes.
template <class Q = no_quant>
class basic_block : public nn::module {
 public:
  basic_block(std::size_t cin, std::size_t cout, std::size_t stride)
      : conv1_({.in = cin, .out = cout, .kernel = 3, .stride = stride, .act = activation::relu}),
        conv2_({.in = cout, .out = cout, .kernel = 3}) {
    register_module("conv1", conv1_);
    register_module("conv2", conv2_);
    if (stride != 1 || cin != cout) {
      shortcut_ = std::make_unique<nn::conv_bn<Q>>(nn::conv_bn_config{.in = cin, .out = cout, .kernel = 1, .stride = stride});
      register_module("shortcut", *shortcut_);
    }
  }

  variable forward(const variable& x) override {
    const variable y = conv2_(conv1_(x));
    return nn::functional::relu(autograd::add(y, shortcut_ ? (*shortcut_)(x) : x));
  }

  nn::conv_bn<Q>& conv1() { return conv1_; }
  nn::conv_bn<Q>& conv2() { return conv2_; }
  nn::conv_bn<Q>* shortcut() { return shortcut_.get(); }

 private:
  nn::conv_bn<Q> conv1_, conv2_;
  std::unique_ptr<nn::conv_bn<Q>> shortcut_;
};

template <class Q = no_quant>
class resnet : public nn::sequential {
 public:
  resnet() {
    emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 1, .out = 16, .kernel = 3, .act = activation::relu});
    emplace<basic_block<Q>>(16, 16, 1);
    emplace<basic_block<Q>>(16, 32, 2);
    emplace<basic_block<Q>>(32, 64, 2);
    emplace<nn::global_avg_pool>();
    emplace<nn::linear<Q>>(nn::linear_config{.in = 64, .out = 10});
  }
};

inline const char* const model_names[] = {"cnn", "mobilenet", "resnet"};

/// A reference model by name, initialised from `seed` as PyTorch's defaults would.
template <class Q = no_quant>
std::unique_ptr<nn::module> make_model(const std::string& name, unsigned seed) {
  std::unique_ptr<nn::module> m;
  if (name == "cnn") m = std::make_unique<cnn<Q>>();
  else if (name == "mobilenet") m = std::make_unique<mobilenet<Q>>();
  else if (name == "resnet") m = std::make_unique<resnet<Q>>();
  else throw value_error("xquant: unknown model '" + name + "' (cnn, mobilenet, resnet)");
  std::mt19937 rng(seed);
  m->reset_parameters(rng);
  return m;
}

}  // namespace xquant::examples
