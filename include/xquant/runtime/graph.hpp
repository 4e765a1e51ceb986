#pragma once
// The int8 graph: a traced forward pass (nn/trace.hpp) turned into a list of integer steps
// over NHWC uint8 tensors, with every layer lowered to kernel arguments (lower.hpp). The
// graph's types are in graph_types.hpp, which code that only runs a graph includes instead
// (no nn/, autograd/ or xtensor: it builds with -fno-exceptions -fno-rtti).
//
// Values are per-image tensors [H][W][C] (or [features] once flat); the batch is the outer
// dimension at run time. Flatten and identity produce no step: their output is the same
// buffer under another name (a flat NHWC tensor is its row-major bytes). A dense layer after
// flatten gets its weight columns reordered once, from the NCHW model's C-major order to
// NHWC (lower.hpp).

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/nn/module.hpp"
#include "xquant/nn/trace.hpp"
#include "xquant/runtime/graph_types.hpp"
#include "xquant/runtime/lower.hpp"

namespace xquant::runtime {

namespace detail {

/// Builds the graph one traced layer at a time.
class graph_builder {
 public:
  graph_builder(const nn::module& root, const nn::variable& input) {
    for (const auto& [name, m] : root.named_modules()) names_[m] = name.empty() ? "model" : name;
    const shape_t s = input.shape();
    check<shape_error>(s.size() == 4, "int8 conversion: the sample input must be [N, C, H, W], got ",
                       shape_string(s));
    g_.input_c = s[1];
    g_.input_h = s[2];
    g_.input_w = s[3];
    input_node_ = input.node_ptr().get();
  }

  void add(const nn::traced_layer& t) {
    where_ = name_of(t.layer);
    std::visit([&](const auto& spec) { add_layer(spec, t); }, t.spec);
  }

  graph finish(const nn::variable& output) {
    g_.output = value_of(output, "the model's output");
    check<value_error>(!g_.steps.empty(), "int8 conversion: the traced forward pass recorded no layers");
    return std::move(g_);
  }

 private:
  std::string name_of(const nn::module* m) const {
    const auto it = names_.find(m);
    return it == names_.end() ? std::string("(a layer outside the model)") : it->second;
  }

  std::size_t value_of(const nn::variable& v, const std::string& what) const {
    const auto it = ids_.find(v.node_ptr().get());
    check<value_error>(it != ids_.end(), "int8 conversion: ", what, " comes from an operation with no integer "
                       "form (only traced layers convert: quant_stub, conv_bn, conv2d, linear, quantized_add, "
                       "quantized_concat, pooling, flatten; a functional op or an unquantized tensor in forward() "
                       "breaks the chain)");
    return it->second;
  }
  std::size_t input_of(const nn::traced_layer& t, std::size_t i) const {
    return value_of(t.inputs.at(i), "the input of layer '" + where_ + "'");
  }
  std::size_t new_value(const nn::variable& v, value_info info) {
    g_.values.push_back(info);
    ids_[v.node_ptr().get()] = g_.values.size() - 1;
    return g_.values.size() - 1;
  }
  void alias(const nn::variable& v, std::size_t id) { ids_[v.node_ptr().get()] = id; }
  // Emplaces the concrete step: moving a whole step variant makes GCC 12 report
  // -Wmaybe-uninitialized false positives for the alternatives it does not hold.
  template <class Step>
  void push(Step&& s) {
    g_.steps.emplace_back(std::in_place_type<std::decay_t<Step>>, std::forward<Step>(s));
    g_.step_names.push_back(where_);
  }
  const value_info& info(std::size_t id) const { return g_.values[id]; }

  void add_layer(const nn::input_spec& spec, const nn::traced_layer& t) {
    check<value_error>(t.inputs.at(0).node_ptr().get() == input_node_, "int8 conversion: the input quantizer '",
                       where_, "' does not read the model's input");
    value_info v{g_.input_h, g_.input_w, g_.input_c, false, 0, stored_grid(spec.output, where_), value_info::npos};
    push(quantize_step{new_value(t.output, v)});
  }

  void add_layer(const nn::weighted_spec& spec, const nn::traced_layer& t) {
    const std::size_t in = input_of(t, 0);
    const value_info x = info(in);
    // From now on the layer's evaluation forward adds the bias lower_weighted computes.
    if (auto* q = dynamic_cast<nn::qat_control*>(t.layer)) q->set_input_scale(x.grid.scale);
    value_info y;
    y.grid = stored_grid(spec.output, where_);
    if (spec.is_linear) {
      check<shape_error>(x.flat && x.c == spec.in, "int8 conversion: dense layer '", where_, "' expects ", spec.in,
                         " features, its input has ", x.bytes(), x.flat ? "" : " (not flattened)");
      y.flat = true;
      y.c = spec.out;
      lowered_weighted w = lower_weighted(spec, x.grid, y.grid, x.flat_c, where_);
      push(dense_step{in, new_value(t.output, y), std::move(w)});
      return;
    }
    check<shape_error>(!x.flat && x.c == spec.in, "int8 conversion: convolution '", where_, "' expects ", spec.in,
                       " input channels, its input has ", x.c, x.flat ? " features (flat)" : "");
    check<shape_error>(x.h + 2 * spec.padding >= spec.kernel && x.w + 2 * spec.padding >= spec.kernel,
                       "int8 conversion: convolution '", where_, "' has a kernel larger than its padded input");
    y.h = (x.h + 2 * spec.padding - spec.kernel) / spec.stride + 1;
    y.w = (x.w + 2 * spec.padding - spec.kernel) / spec.stride + 1;
    y.c = spec.out;
    lowered_weighted w = lower_weighted(spec, x.grid, y.grid, 0, where_);
    if (spec.groups == 1) {
      push(conv_step{in, new_value(t.output, y), spec.kernel, spec.stride, spec.padding, std::move(w)});
      return;
    }
    const bool depthwise = spec.groups == spec.in && spec.out == spec.in;
    check<value_error>(depthwise && spec.kernel == 3 && spec.padding == 1 && (spec.stride == 1 || spec.stride == 2),
                       "int8 conversion: '", where_, "' is a grouped convolution (groups ", spec.groups, ", kernel ",
                       spec.kernel, ", stride ", spec.stride, "); the int8 engine runs groups = 1 and 3x3 depthwise "
                       "(padding 1, stride 1 or 2)");
    push(depthwise_step{in, new_value(t.output, y), spec.stride, std::move(w)});
  }

  void add_layer(const nn::add_spec& spec, const nn::traced_layer& t) {
    const std::size_t a = input_of(t, 0), b = input_of(t, 1);
    const value_info x = info(a);
    check<shape_error>(x.h == info(b).h && x.w == info(b).w && x.c == info(b).c && x.flat == info(b).flat,
                       "int8 conversion: residual add '", where_, "' adds tensors of different shapes");
    value_info y = x;
    y.storage_of = value_info::npos;
    y.grid = stored_grid(spec.output, where_);
    push(add_step{a, b, new_value(t.output, y), spec.act});
  }

  void add_layer(const nn::concat_spec& spec, const nn::traced_layer& t) {
    concat_step st;
    value_info y;
    for (std::size_t i = 0; i < t.inputs.size(); ++i) {
      st.inputs.push_back(input_of(t, i));
      const value_info& x = info(st.inputs.back());
      if (i == 0) y = x;
      check<shape_error>(x.h == y.h && x.w == y.w && x.flat == y.flat, "int8 conversion: concat '", where_,
                         "': input ", i, " differs from input 0 in more than the channels");
      check<value_error>(x.flat_c == 0, "int8 conversion: concat '", where_, "': input ", i,
                         " is a flattened image; concatenate the images, then flatten");
      if (i > 0) y.c += x.c;
    }
    check<value_error>(!st.inputs.empty(), "int8 conversion: concat '", where_, "' has no inputs");
    y.storage_of = value_info::npos;
    y.grid = stored_grid(spec.output, where_);
    st.out = new_value(t.output, y);
    push(std::move(st));
  }

  void add_layer(const nn::pool_spec& spec, const nn::traced_layer& t) {
    const std::size_t in = input_of(t, 0);
    const value_info x = info(in);
    check<shape_error>(!x.flat, "int8 conversion: pooling '", where_, "' needs an NHWC image, its input is flat");
    value_info y = x;
    y.storage_of = value_info::npos;
    if (spec.op == nn::pool_spec::kind::global_average) {
      check<value_error>(spec.output.has_value(), "int8 conversion: global average pool '", where_,
                         "' has no output quantizer (an FP32 global_avg_pool<>; use global_avg_pool<Q>)");
      y = value_info{1, 1, x.c, true, 0, stored_grid(*spec.output, where_), value_info::npos};
      push(global_avg_pool_step{in, new_value(t.output, y)});
      return;
    }
    check<value_error>(spec.op == nn::pool_spec::kind::max && spec.kernel == 2 && spec.stride == 2 &&
                           spec.padding == 0,
                       "int8 conversion: pooling '", where_, "': the int8 engine runs max pooling 2x2 stride 2 "
                       "and global average pooling");
    y.h = x.h / 2;
    y.w = x.w / 2;
    check<shape_error>(y.h > 0 && y.w > 0, "int8 conversion: max pool '", where_, "' on a 1-pixel-wide input");
    push(max_pool_step{in, new_value(t.output, y)});
  }

  void add_layer(const nn::flatten_spec&, const nn::traced_layer& t) {
    const std::size_t in = input_of(t, 0);
    const value_info x = info(in);
    if (x.flat) {
      alias(t.output, in);
      return;
    }
    value_info y{1, 1, x.bytes(), true, (x.h * x.w > 1) ? x.c : 0, x.grid};
    y.storage_of = x.storage_of == value_info::npos ? in : x.storage_of;
    new_value(t.output, y);
  }

  void add_layer(const nn::identity_spec&, const nn::traced_layer& t) { alias(t.output, input_of(t, 0)); }

  void add_layer(const nn::unquantized_spec& spec, const nn::traced_layer&) {
    throw value_error("int8 conversion: layer '" + where_ + "' has no integer form: " + spec.why);
  }

  graph g_;
  std::map<const nn::module*, std::string> names_;
  std::map<const void*, std::size_t> ids_;
  const void* input_node_ = nullptr;
  std::string where_;
};

}  // namespace detail

/// Traces one evaluation-mode forward pass of `model` on `sample` ([N, C, H, W], any values:
/// only shapes and the layers' parameters matter) and builds its int8 graph. The model's
/// training mode is restored afterwards.
inline graph build_graph(nn::module& model, const array<float>& sample) {
  const bool was_training = model.is_training();
  model.eval();
  nn::tracer tracer;
  nn::variable output;
  const nn::variable input(sample);
  try {
    autograd::no_grad_guard no_grad;
    nn::trace_scope scope(tracer);
    output = model(input);
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  detail::graph_builder builder(model, input);
  for (const nn::traced_layer& t : tracer.layers()) builder.add(t);
  return builder.finish(output);
}

}  // namespace xquant::runtime
