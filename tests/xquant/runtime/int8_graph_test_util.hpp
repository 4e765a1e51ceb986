#pragma once
// A small int8 graph built by hand with every step kind and a flattened view, for the
// validate, int8 model file and fuzzing tests (tests/fuzz/ uses it for its seed corpus):
//
//   v0  quantize                 [6, 6, 2]
//   v1  conv 3x3 pad 1, ReLU     [6, 6, 4]
//   v2  depthwise 3x3 stride 1   [6, 6, 4]
//   v3  conv 1x1                 [6, 6, 4]
//   v4  add v1 + v3, ReLU        [6, 6, 4]
//   v5  max pool                 [3, 3, 4]
//   v6  conv 3x3 stride 2 pad 1  [2, 2, 8]
//   v7  global average pool      [8] flat
//   v8  flatten of v6 (a view)   [32] flat
//   v9  dense v8                 [5] flat
//   v10 dense v7                 [5] flat
//   v11 add v9 + v10             [5] flat
//   v12 concat v11 | v10 | v7    [18] flat, the output (v11 is on its grid: a copy)
//
// Weights, biases and scales come from a fixed LCG, so every build gets the same graph.

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "xquant/kernels/requant_args.hpp"
#include "xquant/runtime/graph_types.hpp"

namespace int8_graph_test {

using namespace xquant;
using namespace xquant::runtime;

struct lcg {
  std::uint32_t state;
  explicit lcg(std::uint32_t seed) : state(seed) {}
  std::uint32_t next() {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  }
  int uniform(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<std::uint32_t>(hi - lo + 1)); }
};

inline activation_grid make_grid(float scale, std::int32_t zero_point, std::int32_t qmin = 0, std::int32_t qmax = 255) {
  activation_grid g;
  g.scale = scale;
  g.zero_point = zero_point;
  g.qmin = qmin;
  g.qmax = qmax;
  return g;
}

inline value_info make_value(std::size_t h, std::size_t w, std::size_t c, activation_grid grid, bool flat = false) {
  value_info v;
  v.h = h;
  v.w = w;
  v.c = c;
  v.flat = flat;
  v.grid = grid;
  return v;
}

/// Random small weights and biases; per-channel scales around 1e-3 (acc scale / out scale).
inline lowered_weighted make_weighted(std::size_t out, std::size_t depth, const activation_grid& y, nn::activation act,
                                      lcg& rng) {
  lowered_weighted w;
  w.out = out;
  w.depth = depth;
  for (std::size_t i = 0; i < out * depth; ++i) w.weight.push_back(static_cast<std::int8_t>(rng.uniform(-127, 127)));
  std::vector<float> scales;
  for (std::size_t o = 0; o < out; ++o) {
    w.bias.push_back(rng.uniform(-3000, 3000));
    scales.push_back(static_cast<float>(rng.uniform(400, 1600)) * 1e-6f);
  }
  std::int32_t lo = 0, hi = 0;
  fused_clamp(act, y, lo, hi);
  w.requant = kernels::make_requant_channel_params<std::uint8_t>(scales, y.zero_point, lo, hi);
  return w;
}

inline graph small_graph() {
  lcg rng(2024);
  graph g;
  g.input_c = 2;
  g.input_h = 6;
  g.input_w = 6;
  const activation_grid in = make_grid(0.02f, 128), a = make_grid(0.05f, 10), b = make_grid(0.04f, 120),
                        c = make_grid(0.03f, 100), d = make_grid(0.1f, 60, 1, 250),
                        e = make_grid(0.1f, 60);
  g.values = {make_value(6, 6, 2, in),      make_value(6, 6, 4, a),       make_value(6, 6, 4, b),
              make_value(6, 6, 4, c),       make_value(6, 6, 4, a),       make_value(3, 3, 4, a),
              make_value(2, 2, 8, b),       make_value(1, 1, 8, c, true), make_value(1, 1, 32, b, true),
              make_value(1, 1, 5, d, true), make_value(1, 1, 5, c, true), make_value(1, 1, 5, e, true),
              make_value(1, 1, 18, e, true)};
  g.values[8].storage_of = 6;
  g.values[8].flat_c = 8;
  using nn::activation;
  auto add_step_named = [&]<class Step>(Step&& s, const char* name) {  // emplaced: see graph_builder::push
    g.steps.emplace_back(std::in_place_type<std::decay_t<Step>>, std::forward<Step>(s));
    g.step_names.emplace_back(name);
  };
  add_step_named(quantize_step{0}, "quant");
  add_step_named(conv_step{0, 1, 3, 1, 1, make_weighted(4, 18, a, activation::relu, rng)}, "conv1");
  add_step_named(depthwise_step{1, 2, 1, make_weighted(4, 9, b, activation::relu6, rng)}, "block.dw");
  add_step_named(conv_step{2, 3, 1, 1, 0, make_weighted(4, 4, c, activation::none, rng)}, "block.project");
  add_step_named(add_step{1, 3, 4, activation::relu}, "block.add");
  add_step_named(max_pool_step{4, 5}, "pool");
  add_step_named(conv_step{5, 6, 3, 2, 1, make_weighted(8, 36, b, activation::none, rng)}, "conv2");
  add_step_named(global_avg_pool_step{6, 7}, "gap");
  add_step_named(dense_step{8, 9, make_weighted(5, 32, d, activation::none, rng)}, "fc_flat");
  add_step_named(dense_step{7, 10, make_weighted(5, 8, c, activation::none, rng)}, "fc_gap");
  add_step_named(add_step{9, 10, 11, activation::none}, "head.add");
  add_step_named(concat_step{{11, 10, 7}, 12}, "head.concat");
  g.output = 12;
  return g;
}

}  // namespace int8_graph_test
