#pragma once
// conv_bn<Q>: convolution (no bias) -> BatchNorm -> optional ReLU / ReLU6, as one module.
//
// This is the unit every reference model is built from, and the unit that quantization
// sees: QAT folds the BatchNorm into the convolution weights before weight fake
// quantization and puts the activation quantizer after the activation (never between
// them), and int8 conversion turns it into one convolution with a fused clamp. Keeping
// the three together in one module is what lets the trained graph be the graph that runs.
//
// Children: "conv" (conv2d<Q>, padding kernel/2 — "same" for odd kernels) and "bn".

#include <cstddef>
#include <random>

#include "xquant/nn/functional/activation.hpp"
#include "xquant/nn/layers/batch_norm.hpp"
#include "xquant/nn/layers/conv2d.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

enum class activation { none, relu, relu6 };

struct conv_bn_config {
  std::size_t in = 0, out = 0, kernel = 1, stride = 1, groups = 1;
  activation act = activation::none;
};

inline variable apply_activation(activation act, const variable& x) {
  switch (act) {
    case activation::relu:
      return functional::relu(x);
    case activation::relu6:
      return functional::relu6(x);
    case activation::none:
      break;
  }
  return x;
}

template <class Q = no_quant>
class conv_bn : public module {
 public:
  explicit conv_bn(const conv_bn_config& c)
      : conv_({.in = c.in, .out = c.out, .kernel = c.kernel, .stride = c.stride, .padding = c.kernel / 2,
               .groups = c.groups, .bias = false}),
        bn_(c.out),
        act_(c.act) {
    register_module("conv", conv_);
    register_module("bn", bn_);
  }

  variable forward(const variable& x) override { return apply_activation(act_, bn_(conv_(x))); }

  conv2d<Q>& conv() { return conv_; }
  batch_norm2d& bn() { return bn_; }
  activation act() const { return act_; }

 private:
  conv2d<Q> conv_;
  batch_norm2d bn_;
  activation act_;
};

}  // namespace xquant::nn
