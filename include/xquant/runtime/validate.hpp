#pragma once
// validate(graph): the complete check that an int8 graph is safe to execute.
//
// build_graph makes valid graphs; a graph read from a file (io/int8_model_file.hpp) or put
// together by hand may not be, and the executor (int8_model.hpp) and its kernels take the
// graph as trusted plain data. validate() proves, before anything runs, every fact they rely
// on, so that a passing graph can neither read nor write out of bounds, overflow an int32
// accumulator, nor make a kernel parameter function throw later:
//
//   structure  step_names has one name per step; the first step, and only it, quantizes
//              the input; steps are in topological order: every value a step reads has
//              been produced (a flattened view is produced with the value it views), every
//              value is written by exactly one step, a view by none; the output is produced
//              and flat.
//   size       at most max_graph_nodes steps and values.
//   values     extents positive, a flat value has h = w = 1, flat_c divides c; at most
//              max_value_bytes per image each and max_graph_bytes all together (so that a
//              hostile file cannot make the executor allocate gigabytes per image); a view
//              (storage_of) is flat and names an earlier non-view value with the same
//              bytes and grid; grids: finite scale >= the smallest normal float, zero point
//              and 0 <= qmin <= qmax <= 255 inside the uint8 storage.
//   shapes     re-derived for every step: conv (H + 2P - K) / S + 1, depthwise 3x3 pad 1
//              (H - 1) / S + 1 with S in {1, 2}, max pool H / 2 (H >= 2), global average
//              pool to a flat [C], dense over the flat features, add of equal shapes,
//              concat of inputs that differ only in channels (none a flattened image) to
//              the sum of their channels.
//   weights    depth = K * K * C_in (depthwise 9, dense C_in), weight = out * depth bytes,
//              bias, scale, multiplier and shift arrays of `out` entries; every scale in the
//              requantization domain (0, 2^30) with exactly the multiplier and shift
//              kernels::quantize_multipliers gives it; the requantization zero point is the
//              output grid's and its clamp an ordered range inside [0, 255] (fused_clamp
//              narrows the grid's range, but a zero point outside the grid can move it out);
//              per output channel |bias| + 255 * sum |w| < 2^31, which keeps every int32
//              sum exact (implied by the bound lower_weighted checks), and |bias| <= 2^30
//              for depthwise (kernels/reference/int8/depthwise.hpp).
//   kernels    the conditions of the parameters the executor derives: add and concat scale
//              ratios below max_add_ratio, the global average pool's pixel count and
//              requantization scale; the grid checks above are those of make_activation_quant
//              (quantize and dequantize at the boundary). make_add_params,
//              make_rescale_params and make_global_avg_pool_params are then called as the
//              executor calls them, so that a check they gain later
//              cannot be missed (they then fail without the step in the message).
//
// No try/catch: the header builds with -fno-exceptions, where a failed check aborts with
// its message (core/error.hpp), so int8_model can call validate() in firmware too.
//
// The first problem throws shape_error (extents, indices, sizes) or value_error (numbers)
// naming the step, e.g. "int8 graph: step 4 (conv 'layer1.0.conv2'): weight has 4607 bytes,
// out * depth = 16 * 288". Checks are ordered so that no arithmetic overflows and no index is
// used before it is known to be in range.

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "xquant/core/error.hpp"
#include "xquant/kernels/fixed_point.hpp"
#include "xquant/kernels/reference/int8/add.hpp"
#include "xquant/kernels/reference/int8/concat.hpp"
#include "xquant/kernels/reference/int8/depthwise.hpp"
#include "xquant/kernels/reference/int8/pool.hpp"
#include "xquant/kernels/requant_args.hpp"
#include "xquant/runtime/graph_types.hpp"

namespace xquant::runtime {

/// Bytes per image of one value, and of all values together (an upper bound of the arena).
inline constexpr std::size_t max_value_bytes = std::size_t{1} << 28;
inline constexpr std::size_t max_graph_bytes = std::size_t{1} << 30;
/// Values and steps of a graph: far above real networks (hundreds), low enough that the
/// executor's memory planner, quadratic in the values, stays well under a second.
inline constexpr std::size_t max_graph_nodes = std::size_t{1} << 15;

namespace detail {

/// Names of the step kinds, in the order of the step variant.
inline const char* step_kind(const step& s) {
  static constexpr const char* names[] = {"quantize", "conv",     "depthwise",      "dense",
                                          "add",      "max_pool", "global_avg_pool", "concat"};
  static_assert(std::variant_size_v<step> == sizeof names / sizeof names[0]);
  return names[s.index()];
}

/// a * b, or false when it overflows size_t.
inline bool multiply(std::size_t a, std::size_t b, std::size_t& product) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return false;
  product = a * b;
  return true;
}

class graph_validator {
 public:
  explicit graph_validator(const graph& g) : g_(g) {}

  void run() {
    check<shape_error>(g_.step_names.size() == g_.steps.size(), "int8 graph: ", g_.steps.size(), " steps but ",
                       g_.step_names.size(), " step names");
    check<shape_error>(!g_.steps.empty(), "int8 graph: no steps");
    check<shape_error>(g_.steps.size() <= max_graph_nodes && g_.values.size() <= max_graph_nodes, "int8 graph: ",
                       g_.steps.size(), " steps and ", g_.values.size(), " values; at most ", max_graph_nodes,
                       " of each");
    check_input();
    for (std::size_t v = 0; v < g_.values.size(); ++v) check_value(v);
    produced_.assign(g_.values.size(), false);
    for (step_ = 0; step_ < g_.steps.size(); ++step_) {
      const step& s = g_.steps[step_];
      require<shape_error>((step_ == 0) == std::holds_alternative<quantize_step>(s),
                           step_ == 0 ? "the first step must quantize the input" : "a second quantize step");
      std::visit([&](const auto& st) { check_step(st); }, s);
    }
    step_ = npos;
    for (std::size_t v = 0; v < g_.values.size(); ++v) {
      check<shape_error>(g_.values[v].storage_of != value_info::npos || produced_[v], "int8 graph: value ", v,
                         " is never written by a step");
    }
    check<shape_error>(g_.output < g_.values.size(), "int8 graph: output value ", g_.output, " does not exist (",
                       g_.values.size(), " values)");
    check<shape_error>(g_.values[g_.output].flat, "int8 graph: the output value ", g_.output,
                       " must be flat [classes] (dense or global average pool)");
  }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  /// Throws E with "int8 graph: step 3 (conv 'block.conv1'): " before the parts.
  template <class E, class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    xquant::detail::throw_error<E>("int8 graph: step ", step_, " (", step_kind(g_.steps[step_]), " '",
                                   g_.step_names[step_], "'): ", parts...);
  }
  template <class E, class... Parts>
  void require(bool ok, const Parts&... parts) const {
    if (!ok) [[unlikely]] fail<E>(parts...);
  }

  void check_input() const {
    check<shape_error>(g_.input_c > 0 && g_.input_h > 0 && g_.input_w > 0, "int8 graph: input extents [", g_.input_c,
                       ", ", g_.input_h, ", ", g_.input_w, "] must be positive");
    std::size_t hw = 0, chw = 0;
    check<shape_error>(multiply(g_.input_h, g_.input_w, hw) && multiply(hw, g_.input_c, chw) && chw <= max_value_bytes,
                       "int8 graph: input [", g_.input_c, ", ", g_.input_h, ", ", g_.input_w, "] is larger than ",
                       max_value_bytes, " elements per image");
  }

  void check_value(std::size_t v) {
    const value_info& x = g_.values[v];
    check<shape_error>(x.h > 0 && x.w > 0 && x.c > 0, "int8 graph: value ", v, " has extents [", x.h, ", ", x.w, ", ",
                       x.c, "]; all must be positive");
    std::size_t hw = 0, bytes = 0;
    check<shape_error>(multiply(x.h, x.w, hw) && multiply(hw, x.c, bytes) && bytes <= max_value_bytes,
                       "int8 graph: value ", v, " [", x.h, ", ", x.w, ", ", x.c, "] is larger than ", max_value_bytes,
                       " bytes per image");
    check<shape_error>(!x.flat || (x.h == 1 && x.w == 1), "int8 graph: flat value ", v, " has h = ", x.h, ", w = ", x.w,
                       " (must be 1)");
    check<shape_error>(x.flat_c == 0 || (x.flat && x.c % x.flat_c == 0), "int8 graph: value ", v, ": flat_c ", x.flat_c,
                       x.flat ? " does not divide its " : " set on a value that is not flat, of ", x.c, " channels");
    check_grid(x.grid, v);
    if (x.storage_of != value_info::npos) {
      const std::size_t s = x.storage_of;
      check<shape_error>(s < v && g_.values[s].storage_of == value_info::npos, "int8 graph: value ", v,
                         " is a view of value ", s, ", which is not an earlier value with a buffer of its own");
      check<shape_error>(x.flat && g_.values[s].bytes() == bytes, "int8 graph: value ", v,
                         " (a flattened view) must be flat with the bytes of value ", s, " (", bytes, " vs ",
                         g_.values[s].bytes(), ")");
      check<value_error>(same_grid(x.grid, g_.values[s].grid), "int8 graph: value ", v, " views the bytes of value ", s,
                         " under another grid");
    } else {
      total_bytes_ += bytes;
      check<shape_error>(total_bytes_ <= max_graph_bytes, "int8 graph: the values take more than ", max_graph_bytes,
                         " bytes per image");
    }
  }

  static void check_grid(const activation_grid& g, std::size_t v) {
    check<value_error>(std::isfinite(g.scale) && g.scale >= std::numeric_limits<float>::min(), "int8 graph: value ", v,
                       ": grid scale ", g.scale, " is not a finite number >= ", std::numeric_limits<float>::min());
    check<value_error>(g.zero_point >= 0 && g.zero_point <= 255, "int8 graph: value ", v, ": zero point ", g.zero_point,
                       " is outside the uint8 storage [0, 255]");
    check<value_error>(g.qmin >= 0 && g.qmin <= g.qmax && g.qmax <= 255, "int8 graph: value ", v, ": grid [", g.qmin,
                       ", ", g.qmax, "] is not an ordered range inside [0, 255]");
  }

  /// A value the current step reads: in range and already produced.
  const value_info& input(std::size_t v, const char* role) const {
    require<shape_error>(v < g_.values.size(), role, " value ", v, " does not exist (", g_.values.size(), " values)");
    const std::size_t root = g_.values[v].storage_of == value_info::npos ? v : g_.values[v].storage_of;
    require<shape_error>(produced_[root], role, " value ", v, " is read before a step writes it");
    return g_.values[v];
  }

  /// The value the current step writes: in range, a buffer of its own, written once.
  const value_info& output(std::size_t v) {
    require<shape_error>(v < g_.values.size(), "output value ", v, " does not exist (", g_.values.size(), " values)");
    require<shape_error>(g_.values[v].storage_of == value_info::npos, "output value ", v,
                         " is a view of another value's bytes");
    require<shape_error>(!produced_[v], "output value ", v, " is written twice");
    produced_[v] = true;
    return g_.values[v];
  }

  void same_extents(const value_info& y, std::size_t h, std::size_t w, std::size_t c, bool flat) const {
    require<shape_error>(y.h == h && y.w == w && y.c == c && y.flat == flat, "output is [", y.h, ", ", y.w, ", ", y.c,
                         y.flat ? "] flat" : "]", ", expected [", h, ", ", w, ", ", c, flat ? "] flat" : "]");
  }

  static bool same_grid(const activation_grid& a, const activation_grid& b) {
    return std::bit_cast<std::uint32_t>(a.scale) == std::bit_cast<std::uint32_t>(b.scale) &&
           a.zero_point == b.zero_point && a.qmin == b.qmin && a.qmax == b.qmax;
  }

  void check_step(const quantize_step& st) {
    const value_info& y = output(st.out);
    same_extents(y, g_.input_h, g_.input_w, g_.input_c, false);
  }

  void check_step(const conv_step& st) {
    const value_info& x = input(st.in, "input");
    const value_info& y = output(st.out);
    require<shape_error>(!x.flat, "input is flat");
    require<shape_error>(st.kernel > 0 && st.stride > 0, "kernel ", st.kernel, " and stride ", st.stride,
                         " must be positive");
    require<shape_error>(st.padding <= max_value_bytes, "padding ", st.padding, " is absurd");
    require<shape_error>(x.h + 2 * st.padding >= st.kernel && x.w + 2 * st.padding >= st.kernel, "kernel ", st.kernel,
                         " is larger than the padded input ", x.h + 2 * st.padding, "x", x.w + 2 * st.padding);
    same_extents(y, (x.h + 2 * st.padding - st.kernel) / st.stride + 1,
                 (x.w + 2 * st.padding - st.kernel) / st.stride + 1, st.w.out, false);
    std::size_t taps = 0, depth = 0;
    require<shape_error>(multiply(st.kernel, st.kernel, taps) && multiply(taps, x.c, depth) && depth == st.w.depth,
                         "depth ", st.w.depth, " is not kernel * kernel * input channels = ", st.kernel, " * ",
                         st.kernel, " * ", x.c);
    check_weighted(st.w, y);
  }

  void check_step(const depthwise_step& st) {
    const value_info& x = input(st.in, "input");
    const value_info& y = output(st.out);
    require<shape_error>(!x.flat, "input is flat");
    require<shape_error>(st.stride == 1 || st.stride == 2, "stride ", st.stride, " is not 1 or 2");
    same_extents(y, (x.h - 1) / st.stride + 1, (x.w - 1) / st.stride + 1, x.c, false);
    require<shape_error>(st.w.depth == 9, "depth ", st.w.depth, " is not 9 (3x3 taps)");
    require<shape_error>(st.w.out == x.c, st.w.out, " filters for ", x.c, " channels");
    check_weighted(st.w, y);
    for (std::size_t o = 0; o < st.w.out; ++o) {
      require<value_error>(std::abs(std::int64_t{st.w.bias[o]}) <= kernels::int8::max_depthwise_bias, "bias[", o,
                           "] = ", st.w.bias[o], " is outside [-2^30, 2^30]");
    }
  }

  void check_step(const dense_step& st) {
    const value_info& x = input(st.in, "input");
    const value_info& y = output(st.out);
    require<shape_error>(x.flat, "input is not flat");
    same_extents(y, 1, 1, st.w.out, true);
    require<shape_error>(st.w.depth == x.c, "depth ", st.w.depth, " is not the ", x.c, " input features");
    check_weighted(st.w, y);
  }

  void check_step(const add_step& st) {
    const value_info& a = input(st.a, "first input");
    const value_info& b = input(st.b, "second input");
    const value_info& y = output(st.out);
    require<shape_error>(a.h == b.h && a.w == b.w && a.c == b.c && a.flat == b.flat, "inputs [", a.h, ", ", a.w, ", ",
                         a.c, "] and [", b.h, ", ", b.w, ", ", b.c, "] differ");
    same_extents(y, a.h, a.w, a.c, a.flat);
    require<value_error>(st.act == activation::none || st.act == activation::relu || st.act == activation::relu6,
                         "unknown activation ", static_cast<int>(st.act));
    const double alpha = static_cast<double>(a.grid.scale) / y.grid.scale;
    const double beta = static_cast<double>(b.grid.scale) / y.grid.scale;
    require<value_error>(alpha < kernels::int8::max_add_ratio && beta < kernels::int8::max_add_ratio, "scale ratios ",
                         alpha, " and ", beta, " must be below ", kernels::int8::max_add_ratio,
                         " (the add kernel's error bound)");
    // What the executor computes; cannot fail after the checks above.
    std::int32_t lo = 0, hi = 0;
    fused_clamp(st.act, y.grid, lo, hi);
    (void)kernels::int8::make_add_params(a.grid.scale, a.grid.zero_point, b.grid.scale, b.grid.zero_point, y.grid.scale,
                                         y.grid.zero_point, lo, hi);
  }

  void check_step(const max_pool_step& st) {
    const value_info& x = input(st.in, "input");
    const value_info& y = output(st.out);
    require<shape_error>(!x.flat && x.h >= 2 && x.w >= 2, "input must be an image of at least 2x2");
    same_extents(y, x.h / 2, x.w / 2, x.c, false);
    require<value_error>(same_grid(x.grid, y.grid), "max pooling copies bytes: output grid must be the input's");
  }

  void check_step(const global_avg_pool_step& st) {
    const value_info& x = input(st.in, "input");
    const value_info& y = output(st.out);
    require<shape_error>(!x.flat, "input is flat");
    same_extents(y, 1, 1, x.c, true);
    const std::size_t pixels = x.h * x.w;  // <= max_value_bytes
    require<shape_error>(pixels <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max() / 255), pixels,
                         " pixels per image overflow the int32 sum");
    const float m = kernels::int8::average_multiplier(x.grid.scale, y.grid.scale, pixels);
    require<value_error>(kernels::is_valid_requant_scale(m), "requantization scale ", m, " = ", x.grid.scale, " / (",
                         y.grid.scale, " * ", pixels, " pixels) is not a finite number in (0, 2^30)");
    // What the executor computes; cannot fail after the checks above.
    (void)kernels::int8::make_global_avg_pool_params({1, x.h, x.w, x.c}, x.grid.scale, x.grid.zero_point, y.grid.scale,
                                                     y.grid.zero_point, y.grid.qmin, y.grid.qmax);
  }

  void check_step(const concat_step& st) {
    require<shape_error>(!st.inputs.empty(), "no inputs");
    std::size_t channels = 0;
    for (std::size_t i = 0; i < st.inputs.size(); ++i) {
      const value_info& x = input(st.inputs[i], "input");
      const value_info& first = g_.values[st.inputs[0]];
      require<shape_error>(x.h == first.h && x.w == first.w && x.flat == first.flat, "input ", i, " is [", x.h, ", ",
                           x.w, x.flat ? "] flat" : "]", ", input 0 is [", first.h, ", ", first.w,
                           first.flat ? "] flat" : "]", " (all but the channels must agree)");
      require<shape_error>(x.flat_c == 0, "input ", i, " is a flattened image (flat_c ", x.flat_c,
                           "): concatenate before flattening");
      channels += x.c;  // each <= max_value_bytes, at most max_graph_nodes inputs: no overflow
    }
    const value_info& first = g_.values[st.inputs[0]];
    const value_info& y = output(st.out);  // after the inputs: an input cannot be the output
    same_extents(y, first.h, first.w, channels, first.flat);
    for (std::size_t i = 0; i < st.inputs.size(); ++i) {
      const activation_grid& x = g_.values[st.inputs[i]].grid;
      const double alpha = static_cast<double>(x.scale) / y.grid.scale;
      require<value_error>(alpha < kernels::int8::max_add_ratio, "input ", i, ": scale ratio ", alpha,
                           " must be below ", kernels::int8::max_add_ratio, " (the rescale's error bound)");
      // What the executor computes; cannot fail after the checks above.
      (void)kernels::int8::make_rescale_params(x.scale, x.zero_point, y.grid.scale, y.grid.zero_point, y.grid.qmin,
                                               y.grid.qmax);
    }
  }

  void check_weighted(const lowered_weighted& w, const value_info& y) const {
    std::size_t weights = 0;
    require<shape_error>(w.out > 0 && w.depth > 0, "out ", w.out, " and depth ", w.depth, " must be positive");
    require<shape_error>(multiply(w.out, w.depth, weights) && w.weight.size() == weights, "weight has ",
                         w.weight.size(), " bytes, out * depth = ", w.out, " * ", w.depth);
    const kernels::requant_channel_params& rq = w.requant;
    require<shape_error>(w.bias.size() == w.out && rq.scale.size() == w.out && rq.fixed.multiplier.size() == w.out &&
                             rq.fixed.shift.size() == w.out,
                         "bias, scale, multiplier and shift have ", w.bias.size(), ", ", rq.scale.size(), ", ",
                         rq.fixed.multiplier.size(), ", ", rq.fixed.shift.size(), " entries, out is ", w.out);
    for (std::size_t o = 0; o < w.out; ++o) {
      require<value_error>(kernels::is_valid_requant_scale(rq.scale[o]), "requantization scale[", o,
                           "] = ", rq.scale[o], " is not a finite number in (0, 2^30)");
      const kernels::fixed_point_multiplier m = kernels::quantize_multiplier(rq.scale[o]);
      require<value_error>(m.multiplier == rq.fixed.multiplier[o] && m.shift == rq.fixed.shift[o], "channel ", o,
                           ": multiplier ", rq.fixed.multiplier[o], ", shift ", rq.fixed.shift[o],
                           " are not the fixed-point form of scale ", rq.scale[o]);
    }
    require<value_error>(rq.zero_point == y.grid.zero_point, "requantization zero point ", rq.zero_point,
                         " is not the output grid's ", y.grid.zero_point);
    require<value_error>(rq.qmin >= 0 && rq.qmin <= rq.qmax && rq.qmax <= 255, "clamp [", rq.qmin, ", ", rq.qmax,
                         "] is not an ordered range inside the uint8 output [0, 255]");
    check_accumulators(w);
  }

  /// |acc| <= |bias| + 255 * sum |w| for every uint8 input: below 2^31, no int32 sum wraps.
  void check_accumulators(const lowered_weighted& w) const {
    for (std::size_t o = 0; o < w.out; ++o) {
      std::int64_t bound = std::abs(std::int64_t{w.bias[o]});
      const std::int8_t* row = w.weight.data() + o * w.depth;
      for (std::size_t k = 0; k < w.depth && bound <= std::numeric_limits<std::int32_t>::max(); ++k) {
        bound += 255 * std::abs(std::int64_t{row[k]});
      }
      require<value_error>(bound <= std::numeric_limits<std::int32_t>::max(), "output channel ", o,
                           " can overflow the int32 accumulator (|bias| + 255 * sum |w| >= 2^31)");
    }
  }

  const graph& g_;
  std::vector<bool> produced_;
  std::size_t step_ = npos;
  std::size_t total_bytes_ = 0;
};

}  // namespace detail

/// Throws shape_error or value_error, naming the step and its layer, unless `g` is safe to
/// execute (see the top of this file). Takes time linear in the number of weights.
inline void validate(const graph& g) { detail::graph_validator(g).run(); }

}  // namespace xquant::runtime
