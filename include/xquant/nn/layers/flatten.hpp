#pragma once
// flatten: [N, d1, d2, ...] -> [N, d1 * d2 * ...] (no parameters).

#include "xquant/nn/functional/shape_ops.hpp"
#include "xquant/nn/module.hpp"

namespace xquant::nn {

class flatten : public module {
 public:
  variable forward(const variable& x) override { return functional::flatten(x); }
  std::optional<layer_spec> int8_spec() override { return flatten_spec{}; }
};

}  // namespace xquant::nn
