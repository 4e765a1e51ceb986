#pragma once
// Tracing a forward pass: how a trained model tells int8 conversion what it computes.
//
// Conversion does not re-describe the network. It runs one forward pass of the QAT (or
// calibrated) model with a tracer active; every layer that has an integer form reports,
// as it runs, a layer_spec — its computation in plain numbers, with its quantization
// policies already applied by the layer template itself (weights on their integer grid,
// the grids of its outputs) — together with the variables it read and wrote. The
// variables connect the specs into the graph, so residual blocks, concatenations and any
// other composition written in plain C++ need no conversion code: what ran in training is
// what is converted.
//
// Leaf layers override module::int8_spec(); module::operator() records the call when a
// tracer is active. Calls nested inside a recorded layer (its weight quantizer, a child
// conv) are not recorded: the layer's spec covers them. A layer without an integer form
// (an FP32 layer, no_quant) reports unquantized_spec, so conversion can name it instead
// of failing on a missing producer.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "xquant/autograd/variable.hpp"
#include "xquant/core/tensor.hpp"
#include "xquant/nn/activation_grid.hpp"

namespace xquant::nn {

class module;
using autograd::variable;

/// conv2d (NCHW, square kernel) or linear, BatchNorm already folded in.
struct weighted_spec {
  bool is_linear = false;
  /// [out][in / groups][kernel][kernel] (linear: [out][in], kernel 1), row-major, already
  /// quantized with the layer's weight scheme: real weight = weight * weight_scale[out].
  std::vector<std::int32_t> weight;
  std::size_t out = 0, in = 0, kernel = 1, stride = 1, padding = 0, groups = 1;
  std::vector<float> weight_scale;  ///< one per output channel (per tensor: repeated)
  std::int32_t weight_qmin = 0, weight_qmax = 0;
  std::vector<float> bias;  ///< float32 [out]; zeros when the layer has none
  activation act = activation::none;
  activation_grid output;
};

/// y = act(a + b) on the output grid.
struct add_spec {
  activation act = activation::none;
  activation_grid output;
};

/// Channel concatenation of every input, requantized to one output grid.
struct concat_spec {
  activation_grid output;
};

/// max / average pooling (output on the input's grid for max) and global average pooling.
struct pool_spec {
  enum class kind { max, average, global_average };
  kind op = kind::max;
  std::size_t kernel = 1, stride = 1, padding = 0;
  std::optional<activation_grid> output;  ///< average pools requantize; max keeps the input grid
};

/// The network input's quantizer.
struct input_spec {
  activation_grid output;
};

/// [N, C, H, W] -> [N, C*H*W] (row-major, C slowest).
struct flatten_spec {};

/// y = x.
struct identity_spec {};

/// A layer that has no integer form as configured (e.g. an FP32 layer in a model meant for
/// conversion); `why` says what would give it one.
struct unquantized_spec {
  std::string why;
};

using layer_spec = std::variant<input_spec, weighted_spec, add_spec, concat_spec, pool_spec, flatten_spec,
                                identity_spec, unquantized_spec>;

/// One recorded layer call.
struct traced_layer {
  module* layer = nullptr;
  layer_spec spec;
  std::vector<variable> inputs;  // held, so that their identities stay unique
  variable output;
};

/// Collects the layer calls of the forward passes run while a trace_scope is alive.
class tracer {
 public:
  const std::vector<traced_layer>& layers() const { return layers_; }

  // --- used by module ---
  bool recording() const { return depth_ == 0; }
  void enter() { ++depth_; }
  void leave() { --depth_; }
  void record(traced_layer layer) { layers_.push_back(std::move(layer)); }

 private:
  std::vector<traced_layer> layers_;
  int depth_ = 0;
};

namespace detail {
inline tracer*& active_tracer() {
  thread_local tracer* current = nullptr;
  return current;
}
}  // namespace detail

/// The tracer of this thread, or nullptr (the normal case: tracing costs one load).
inline tracer* active_tracer() { return detail::active_tracer(); }

/// Makes `t` this thread's tracer for its lifetime (restores the previous one after).
class trace_scope {
 public:
  explicit trace_scope(tracer& t) : previous_(detail::active_tracer()) { detail::active_tracer() = &t; }
  ~trace_scope() { detail::active_tracer() = previous_; }
  trace_scope(const trace_scope&) = delete;
  trace_scope& operator=(const trace_scope&) = delete;

 private:
  tracer* previous_;
};

}  // namespace xquant::nn
