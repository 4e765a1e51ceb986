#pragma once
// Activation layers: relu and relu6 (no parameters). See functional/activation.hpp.

#include "xquant/nn/functional/activation.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

class relu : public module {
 public:
  variable forward(const variable& x) override { return functional::relu(x); }
};

class relu6 : public module {
 public:
  variable forward(const variable& x) override { return functional::relu6(x); }
};

}  // namespace xquant::nn
