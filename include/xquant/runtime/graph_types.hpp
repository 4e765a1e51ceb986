#pragma once
// The int8 graph's types: what a converted model is, without how it was converted.
//
// graph.hpp builds a graph from a traced QAT model (it needs nn/ and autograd/, hence
// xtensor); this header only defines the result, on top of plain std types and the kernels'
// argument structs, so that code which runs a converted model (int8_model.hpp, a firmware
// build with -fno-exceptions -fno-rtti, a generated model header) does not pull in the
// training stack.
//
// Values are per-image tensors [H][W][C] (or [features] once flat); the batch is the outer
// dimension at run time. Flatten and identity produce no step: their output is the same
// buffer under another name (a flat NHWC tensor is its row-major bytes).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "xquant/kernels/requant_args.hpp"
#include "xquant/nn/activation_grid.hpp"

namespace xquant::runtime {

using nn::activation;
using nn::activation_grid;

/// Clamp bounds of an output grid with a fused activation.
inline void fused_clamp(activation act, const activation_grid& out, std::int32_t& lo, std::int32_t& hi) {
  lo = out.qmin;
  hi = out.qmax;
  if (act == activation::relu || act == activation::relu6) lo = std::max(lo, out.zero_point);
  if (act == activation::relu6) {
    // The QAT graph quantizes relu6's bound 6.0f with round half to even (nearbyint).
    const double six = std::nearbyint(6.0f / out.scale);
    hi = static_cast<std::int32_t>(std::min<double>(hi, out.zero_point + six));
  }
  lo = std::min(lo, hi);
}

/// The integer arguments of a convolution or dense layer.
struct lowered_weighted {
  std::size_t out = 0;
  std::size_t depth = 0;                ///< inputs per output: kernel * kernel * (in / groups)
  std::vector<std::int8_t> weight;      ///< [out][depth], taps in (kh, kw, c) order (NHWC)
  std::vector<std::int32_t> bias;       ///< [out], input zero point folded in
  kernels::requant_channel_params requant;  ///< per-channel M, output zero point, fused clamp
};

/// A tensor of the graph, per image.
struct value_info {
  std::size_t h = 1, w = 1, c = 0;  ///< NHWC extents; a flat tensor has h = w = 1, c = features
  bool flat = false;
  std::size_t flat_c = 0;  ///< after flatten: channels of the NHWC tensor it came from
  activation_grid grid;    ///< stored (uint8) grid
  /// A value that is another value's bytes under another shape (flatten) names that value;
  /// npos: it has a buffer of its own.
  std::size_t storage_of = npos;
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::size_t bytes() const { return h * w * c; }
};

struct quantize_step {  // float NCHW input -> uint8 NHWC
  std::size_t out = 0;
};
struct conv_step {  // GEMM (1x1 stride 1: on the input; else on its windows, kernels/int8/conv.hpp)
  std::size_t in = 0, out = 0;
  std::size_t kernel = 1, stride = 1, padding = 0;
  lowered_weighted w;
};
struct depthwise_step {  // 3x3 depthwise, direct
  std::size_t in = 0, out = 0;
  std::size_t stride = 1;
  lowered_weighted w;
};
struct dense_step {
  std::size_t in = 0, out = 0;
  lowered_weighted w;
};
struct add_step {
  std::size_t a = 0, b = 0, out = 0;
  activation act = activation::none;
};
struct max_pool_step {  // 2x2 stride 2
  std::size_t in = 0, out = 0;
};
struct global_avg_pool_step {
  std::size_t in = 0, out = 0;
};
struct concat_step {  // along the channels, every input requantized to the output grid
  std::vector<std::size_t> inputs;
  std::size_t out = 0;
};

using step = std::variant<quantize_step, conv_step, depthwise_step, dense_step, add_step, max_pool_step,
                          global_avg_pool_step, concat_step>;

struct graph {
  std::vector<value_info> values;
  std::vector<step> steps;
  std::vector<std::string> step_names;  ///< the layer each step came from (dotted module name)
  std::size_t input_c = 0, input_h = 0, input_w = 0;  ///< NCHW input extents per image
  std::size_t output = 0;                              ///< the value dequantized into logits
};

}  // namespace xquant::runtime
