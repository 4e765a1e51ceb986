#pragma once
// Activation layers: relu, relu6 and identity (no parameters), and the `activation` enum
// that conv2d, linear, conv_bn and quantized_add take to fuse an activation into the
// layer. See functional/activation.hpp.
//
// Fusing matters for quantization: a layer's output quantizer sits *after* its fused
// activation (never between the two), so the range it measures is the range the integer
// kernel's clamp produces, and no levels are spent on values ReLU / ReLU6 discard.

#include "xquant/nn/functional/activation.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

// `activation` (none, relu, relu6: an activation fused into the preceding layer) is
// declared in nn/trace.hpp, which int8 conversion shares.

/// act(x); activation::none returns x itself (no op, no copy).
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

class relu : public module {
 public:
  variable forward(const variable& x) override { return functional::relu(x); }
  std::optional<layer_spec> int8_spec() override { return unquantized_spec{standalone}; }
  static constexpr const char* standalone =
      "a standalone activation layer; fuse it into the preceding layer (its `act` option) so that the output "
      "quantizer sits after it";
};

class relu6 : public module {
 public:
  variable forward(const variable& x) override { return functional::relu6(x); }
  std::optional<layer_spec> int8_spec() override { return unquantized_spec{relu::standalone}; }
};

/// y = x. Holds a place in a sequential (e.g. where a QAT model fused a ReLU into the
/// layer before), so that the children keep their indices and parameter names.
class identity : public module {
 public:
  variable forward(const variable& x) override { return x; }
  std::optional<layer_spec> int8_spec() override { return identity_spec{}; }
};

}  // namespace xquant::nn
