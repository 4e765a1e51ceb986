// validate(graph): a hand-built graph with every step kind passes; each rule, broken one at
// a time, throws the promised exception type with a message naming the step and its layer.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "int8_graph_test_util.hpp"
#include "xquant/runtime/validate.hpp"

using namespace xquant;
using namespace xquant::runtime;
using int8_graph_test::small_graph;

namespace {

/// validate(small_graph() after `edit`) throws E whose message contains every fragment.
template <class E>
void check_rejected(const std::function<void(graph&)>& edit, std::initializer_list<std::string> fragments) {
  graph g = small_graph();
  edit(g);
  std::string message;
  bool thrown_as_e = false;
  try {
    validate(g);
  } catch (const E& e) {
    thrown_as_e = true;
    message = e.what();
  } catch (const std::exception& e) {
    message = std::string("wrong exception type: ") + e.what();
  }
  CHECK_MESSAGE(thrown_as_e, message);
  for (const std::string& f : fragments) {
    INFO("message: ", message);
    CHECK_MESSAGE(message.find(f) != std::string::npos, "expected fragment: ", f);
  }
}

conv_step& conv_at(graph& g, std::size_t i) { return std::get<conv_step>(g.steps[i]); }
depthwise_step& depthwise_at(graph& g, std::size_t i) { return std::get<depthwise_step>(g.steps[i]); }
dense_step& dense_at(graph& g, std::size_t i) { return std::get<dense_step>(g.steps[i]); }

}  // namespace

TEST_CASE("validate accepts the hand-built graph with every step kind") {
  const graph g = small_graph();
  CHECK_NOTHROW(validate(g));
  CHECK(g.steps.size() == 12);
}

TEST_CASE("validate: graph structure, step order and value ownership") {
  check_rejected<shape_error>([](graph& g) { g.step_names.pop_back(); }, {"12 steps but 11 step names"});
  check_rejected<shape_error>([](graph& g) { g.steps.clear(), g.step_names.clear(); }, {"no steps"});
  check_rejected<shape_error>([](graph& g) { std::swap(g.steps[0], g.steps[1]); },
                              {"step 0 (conv 'quant')", "the first step must quantize the input"});
  check_rejected<shape_error>([](graph& g) { g.steps[5] = quantize_step{5}; },
                              {"step 5 (quantize 'pool')", "a second quantize step"});
  check_rejected<shape_error>([](graph& g) { conv_at(g, 6).in = 99; },
                              {"step 6 (conv 'conv2')", "input value 99 does not exist (13 values)"});
  check_rejected<shape_error>([](graph& g) { std::swap(g.steps[2], g.steps[3]); },
                              {"step 2 (conv 'block.dw')", "input value 2 is read before a step writes it"});
  check_rejected<shape_error>([](graph& g) { dense_at(g, 8).in = 9; }, {"input value 9 is read before"});
  // A view is produced with its source: reading v8 before v6 exists is reading early.
  check_rejected<shape_error>(
      [](graph& g) {
        std::swap(g.steps[6], g.steps[8]);
        std::swap(g.step_names[6], g.step_names[8]);
      },
      {"step 6 (dense 'fc_flat')", "input value 8 is read before"});
  check_rejected<shape_error>([](graph& g) { std::get<max_pool_step>(g.steps[5]).out = 1; },
                              {"step 5 (max_pool 'pool')", "output value 1 is written twice"});
  check_rejected<shape_error>([](graph& g) { dense_at(g, 9).out = 8; }, {"output value 8 is a view"});
  check_rejected<shape_error>([](graph& g) { dense_at(g, 9).out = 13; }, {"output value 13 does not exist"});
  check_rejected<shape_error>([](graph& g) { g.values.resize(max_graph_nodes + 1, g.values[12]); },
                              {"12 steps and 32769 values; at most 32768 of each"});
  check_rejected<shape_error>([](graph& g) { g.values.push_back(g.values[12]); },
                              {"value 13 is never written by a step"});
  check_rejected<shape_error>([](graph& g) { g.output = 13; }, {"output value 13 does not exist"});
  check_rejected<shape_error>([](graph& g) { g.output = 6; }, {"the output value 6 must be flat"});
}

TEST_CASE("validate: input and value extents, sizes and grids") {
  check_rejected<shape_error>([](graph& g) { g.input_h = 0; }, {"input extents [2, 0, 6] must be positive"});
  check_rejected<shape_error>(
      [](graph& g) {
        g.input_h = std::size_t{1} << 40;
        g.input_w = std::size_t{1} << 40;
      },
      {"is larger than 268435456 elements"});
  check_rejected<shape_error>([](graph& g) { g.values[3].c = 0; }, {"value 3 has extents [6, 6, 0]"});
  check_rejected<shape_error>(
      [](graph& g) {
        g.values[3].h = std::size_t{1} << 33;
        g.values[3].w = std::size_t{1} << 33;
      },
      {"value 3 [8589934592, 8589934592, 4] is larger than"});
  check_rejected<shape_error>(
      [](graph& g) {
        for (std::size_t v = 1; v <= 5; ++v) g.values[v] = int8_graph_test::make_value(16384, 16384, 1, g.values[v].grid);
      },
      {"the values take more than 1073741824 bytes"});
  check_rejected<shape_error>([](graph& g) { g.values[7].h = 2; }, {"flat value 7 has h = 2"});
  check_rejected<shape_error>([](graph& g) { g.values[8].flat_c = 5; }, {"value 8: flat_c 5 does not divide"});
  check_rejected<shape_error>([](graph& g) { g.values[6].flat_c = 2; }, {"value 6: flat_c 2 set on a value"});
  check_rejected<value_error>([](graph& g) { g.values[2].grid.scale = std::nanf(""); }, {"value 2: grid scale nan"});
  check_rejected<value_error>([](graph& g) { g.values[2].grid.scale = -0.5f; }, {"value 2: grid scale -0.5"});
  check_rejected<value_error>([](graph& g) { g.values[2].grid.scale = 1e-40f; }, {"value 2: grid scale"});
  check_rejected<value_error>([](graph& g) { g.values[2].grid.zero_point = 256; }, {"value 2: zero point 256"});
  check_rejected<value_error>([](graph& g) { g.values[2].grid.qmin = -1; }, {"value 2: grid [-1, 255]"});
  check_rejected<value_error>([](graph& g) { g.values[2].grid.qmin = 200, g.values[2].grid.qmax = 100; },
                              {"value 2: grid [200, 100] is not an ordered range"});
}

TEST_CASE("validate: flattened views") {
  check_rejected<shape_error>([](graph& g) { g.values[8].storage_of = 10; },
                              {"value 8 is a view of value 10, which is not an earlier value"});
  check_rejected<shape_error>([](graph& g) { g.values[8].storage_of = 1000; }, {"view of value 1000"});
  check_rejected<shape_error>(
      [](graph& g) {
        g.values.push_back(g.values[8]);
        g.values.back().storage_of = 8;
      },
      {"value 13 is a view of value 8"});
  check_rejected<shape_error>([](graph& g) { g.values[8].storage_of = 5; },
                              {"must be flat with the bytes of value 5 (32 vs 36)"});
  check_rejected<value_error>([](graph& g) { g.values[8].grid.zero_point = 11; }, {"under another grid"});
}

TEST_CASE("validate: every step's extents are re-derived") {
  check_rejected<shape_error>([](graph& g) { g.values[0].c = 3; },
                              {"step 0 (quantize 'quant')", "output is [6, 6, 3], expected [6, 6, 2]"});
  check_rejected<shape_error>([](graph& g) { g.values[1].h = 5; },
                              {"step 1 (conv 'conv1')", "output is [5, 6, 4], expected [6, 6, 4]"});
  check_rejected<shape_error>([](graph& g) { conv_at(g, 6).stride = 1; },
                              {"step 6 (conv 'conv2')", "output is [2, 2, 8], expected [3, 3, 8]"});
  check_rejected<shape_error>([](graph& g) { conv_at(g, 6).stride = 0; }, {"kernel 3 and stride 0 must be positive"});
  check_rejected<shape_error>([](graph& g) { conv_at(g, 6).kernel = 7; },
                              {"kernel 7 is larger than the padded input 5x5"});
  check_rejected<shape_error>([](graph& g) { conv_at(g, 6).padding = std::size_t{1} << 62; }, {"is absurd"});
  check_rejected<shape_error>([](graph& g) { g.steps[10] = conv_step{9, 11, 1, 1, 0, {}}; },
                              {"step 10 (conv 'head.add')", "input is flat"});
  check_rejected<shape_error>(
      [](graph& g) {
        conv_at(g, 6).w.depth = 32;
        conv_at(g, 6).w.weight.resize(8 * 32);
      },
      {"depth 32 is not kernel * kernel * input channels = 3 * 3 * 4"});
  check_rejected<shape_error>([](graph& g) { depthwise_at(g, 2).stride = 3; },
                              {"step 2 (depthwise 'block.dw')", "stride 3 is not 1 or 2"});
  check_rejected<shape_error>([](graph& g) { depthwise_at(g, 2).stride = 2; }, {"expected [3, 3, 4]"});
  check_rejected<shape_error>([](graph& g) { dense_at(g, 8).in = 6; },
                              {"step 8 (dense 'fc_flat')", "input is not flat"});
  check_rejected<shape_error>([](graph& g) { dense_at(g, 8).in = 7; }, {"depth 32 is not the 8 input features"});
  check_rejected<shape_error>([](graph& g) { g.values[9].c = 6; },
                              {"output is [1, 1, 6] flat, expected [1, 1, 5] flat"});
  check_rejected<shape_error>([](graph& g) { std::get<add_step>(g.steps[10]).b = 7; },
                              {"step 10 (add 'head.add')", "inputs [1, 1, 5] and [1, 1, 8] differ"});
  check_rejected<shape_error>(
      [](graph& g) {
        g.steps[10] = max_pool_step{9, 11};
      },
      {"step 10 (max_pool 'head.add')", "input must be an image of at least 2x2"});
  check_rejected<shape_error>([](graph& g) { g.values[7].flat = false; },
                              {"step 7 (global_avg_pool 'gap')", "output is [1, 1, 8], expected [1, 1, 8] flat"});
}

TEST_CASE("validate: weight, bias and requantization arrays") {
  check_rejected<shape_error>([](graph& g) { conv_at(g, 3).w.weight.pop_back(); },
                              {"step 3 (conv 'block.project')", "weight has 15 bytes, out * depth = 4 * 4"});
  check_rejected<shape_error>([](graph& g) { conv_at(g, 3).w.bias.push_back(0); },
                              {"bias, scale, multiplier and shift have 5, 4, 4, 4 entries, out is 4"});
  check_rejected<shape_error>([](graph& g) { conv_at(g, 3).w.requant.fixed.shift.pop_back(); },
                              {"have 4, 4, 4, 3 entries"});
  check_rejected<shape_error>([](graph& g) { depthwise_at(g, 2).w.depth = 8; }, {"depth 8 is not 9"});
  check_rejected<value_error>([](graph& g) { dense_at(g, 9).w.requant.scale[2] = std::nanf(""); },
                              {"step 9 (dense 'fc_gap')", "requantization scale[2] = nan is not a finite number"});
  check_rejected<value_error>([](graph& g) { dense_at(g, 9).w.requant.scale[2] = -1e-3f; },
                              {"requantization scale[2] = -0.001"});
  check_rejected<value_error>([](graph& g) { dense_at(g, 9).w.requant.scale[1] = 2e9f; },
                              {"is not a finite number in (0, 2^30)"});
  check_rejected<value_error>([](graph& g) { dense_at(g, 9).w.requant.scale[4] *= 1.5f; },
                              {"channel 4: multiplier", "are not the fixed-point form of scale"});
  check_rejected<value_error>([](graph& g) { ++dense_at(g, 9).w.requant.fixed.shift[0]; }, {"channel 0: multiplier"});
  check_rejected<value_error>([](graph& g) { dense_at(g, 9).w.requant.zero_point = 99; },
                              {"requantization zero point 99 is not the output grid's 100"});
  check_rejected<value_error>([](graph& g) { dense_at(g, 8).w.requant.qmin = -1; },
                              {"clamp [-1, 250] is not an ordered range inside the uint8 output [0, 255]"});
  check_rejected<value_error>([](graph& g) { dense_at(g, 8).w.requant.qmax = 256; }, {"clamp [1, 256]"});
  check_rejected<value_error>([](graph& g) { dense_at(g, 8).w.requant.qmin = 251; }, {"clamp [251, 250]"});
  check_rejected<value_error>(
      [](graph& g) { dense_at(g, 8).w.bias[3] = std::numeric_limits<std::int32_t>::max() - 1000; },
      {"output channel 3 can overflow the int32 accumulator"});
  check_rejected<value_error>([](graph& g) { depthwise_at(g, 2).w.bias[1] = (1 << 30) + 1; },
                              {"bias[1] = 1073741825 is outside [-2^30, 2^30]"});
  check_rejected<shape_error>([](graph& g) { depthwise_at(g, 2).w.out = 3; }, {"3 filters for 4 channels"});
}

TEST_CASE("validate: residual adds, pooling and the parameters the executor derives") {
  check_rejected<value_error>([](graph& g) { std::get<add_step>(g.steps[4]).act = static_cast<nn::activation>(7); },
                              {"unknown activation 7"});
  // s_a / s_out >= 1024: the add kernel's error bound no longer holds.
  check_rejected<value_error>([](graph& g) { g.values[4].grid.scale = 1e-5f, g.values[5].grid.scale = 1e-5f; },
                              {"step 4 (add 'block.add')", "scale ratios 5000 and 3000 must be below 1024"});
  check_rejected<value_error>([](graph& g) { g.values[5].grid.zero_point = 11; }, {"output grid must be the input's"});
  // 1 / (s_out * pixels) * s_in beyond 2^30: the average pool's requantization scale.
  check_rejected<value_error>([](graph& g) { g.values[7].grid.scale = 1e-37f; },
                              {"step 7 (global_avg_pool 'gap')",
                               "requantization scale 1e+35 = 0.04 / (1e-37 * 4 pixels) is not a finite number"});
}

TEST_CASE("validate: channel concatenation") {
  const auto cat = [](graph& g) -> concat_step& { return std::get<concat_step>(g.steps[11]); };
  check_rejected<shape_error>([&](graph& g) { cat(g).inputs.clear(); }, {"step 11 (concat 'head.concat')", "no inputs"});
  check_rejected<shape_error>([&](graph& g) { cat(g).inputs[2] = 6; },
                              {"input 2 is [2, 2], input 0 is [1, 1] flat (all but the channels must agree)"});
  check_rejected<shape_error>([&](graph& g) { cat(g).inputs[1] = 8; },
                              {"input 1 is a flattened image (flat_c 8): concatenate before flattening"});
  check_rejected<shape_error>([&](graph& g) { cat(g).inputs[0] = 12; }, {"input value 12 is read before"});
  check_rejected<shape_error>([&](graph& g) { cat(g).inputs[0] = 13; }, {"input value 13 does not exist"});
  check_rejected<shape_error>([&](graph& g) { cat(g).out = 10; }, {"output value 10 is written twice"});
  check_rejected<shape_error>([](graph& g) { g.values[12].c = 17; },
                              {"output is [1, 1, 17] flat, expected [1, 1, 18] flat"});
  // s_in / s_out >= 1024: the rescale's error bound no longer holds.
  check_rejected<value_error>([](graph& g) { g.values[12].grid.scale = 1e-5f; },
                              {"step 11 (concat 'head.concat')", "input 0: scale ratio 10000", "below 1024"});
  // The same input twice is fine (it is read, not written).
  graph g = small_graph();
  cat(g).inputs = {11, 11, 7, 10};
  g.values[12].c = 23;
  CHECK_NOTHROW(validate(g));
}
