// int8_model: the converted graph computes what the fake-quant (QAT) graph computes.
//
// Each network below is a QAT model with calibrated, frozen ranges. Its evaluation-mode
// forward (float32 fake quantization) and the int8 engine's output are compared on the
// output grid. Conversion gives each layer its input scale, after which the fake-quant
// forward adds the int8 model's bias and sums in float64 (nn/layers/exact_eval.hpp), so the
// two agree on every element here; before, the bias rounding alone put about 1 element in
// 1000 one step away. Also: inference allocates nothing, and bad input is rejected.

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "../nn/nn_test_util.hpp"
#include "allocation_counter.hpp"
#include "xquant/nn/layers.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/runtime/graph.hpp"
#include "xquant/runtime/int8_model.hpp"

using namespace xquant;
using nn::activation;
using autograd::variable;

namespace {

using Q = w8a8;

/// Calibrates every observer on `x` (training mode, BN frozen), then freezes them and
/// switches to evaluation: the state a converted model is made from.
void calibrate(nn::module& m, const array<float>& x) {
  autograd::no_grad_guard no_grad;
  m.train();
  nn::freeze_bn(m, true);
  (void)m(variable(x));
  nn::freeze_observers(m, true);
  m.eval();
}

/// Random BN statistics and affine parameters, so that folding matters.
void randomize_bn(nn::module& m, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.5f, 1.5f), c(-0.3f, 0.3f);
  for (auto& b : m.buffers()) {
    if (b.name.ends_with("running_var")) for (float& v : *b.value) v = u(rng);
    if (b.name.ends_with("running_mean")) for (float& v : *b.value) v = c(rng);
  }
  for (auto& p : m.parameters()) {
    if (p.name.ends_with("bn.weight")) for (float& v : p.var->value()) v = u(rng);
    if (p.name.ends_with("bn.bias")) for (float& v : p.var->value()) v = c(rng);
  }
}

struct agreement {
  std::size_t total = 0, exact = 0, max_steps = 0;
};

/// Converts `m` and compares its int8 output with the fake-quant output on `x` in steps of
/// the output grid.
agreement compare(nn::module& m, const array<float>& x, std::size_t max_batch = 4) {
  const runtime::graph g = runtime::build_graph(m, x);
  const runtime::value_info out = g.values[g.output];
  runtime::int8_model int8(g, max_batch);
  const std::size_t batch = x.shape()[0];
  std::vector<float> logits(batch * int8.output_size());
  int8.run(std::span<const float>(x.data(), x.size()), batch, logits);

  autograd::no_grad_guard no_grad;
  const variable y = m(variable(x));
  REQUIRE(y.size() == logits.size());
  agreement a;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const double steps = std::abs(static_cast<double>(y.value().data()[i]) - logits[i]) / out.grid.scale;
    const auto s = static_cast<std::size_t>(std::lround(steps));
    a.max_steps = std::max(a.max_steps, s);
    a.exact += s == 0;
    ++a.total;
  }
  return a;
}

/// quant_stub -> body -> (flatten) -> linear: a small network around the layer under test.
template <class Body>
class net : public nn::module {
 public:
  template <class... Args>
  explicit net(std::size_t features, Args&&... args)
      : body_(std::forward<Args>(args)...), fc_({.in = features, .out = 10}) {
    register_module("stub", stub_);
    register_module("body", body_);
    register_module("flatten", flatten_);
    register_module("fc", fc_);
  }
  variable forward(const variable& x) override { return fc_(flatten_(body_(stub_(x)))); }
  Body& body() { return body_; }

 private:
  nn::quant_stub<Q> stub_;
  Body body_;
  nn::flatten flatten_;
  nn::linear<Q> fc_;
};

/// A residual block with every kind of step: conv 3x3 + ReLU6, depthwise 3x3 stride 1,
/// 1x1 projection, add with ReLU, channel concat (of the sum and the block input), max pool,
/// a strided conv and global average pooling.
class mixed_block : public nn::module {
 public:
  mixed_block()
      : conv_({.in = 3, .out = 8, .kernel = 3, .act = activation::relu6}),
        dw_({.in = 8, .out = 8, .kernel = 3, .groups = 8, .act = activation::relu6}),
        project_({.in = 8, .out = 8, .kernel = 1}),
        add_(activation::relu),
        down_({.in = 16, .out = 16, .kernel = 3, .stride = 2, .act = activation::relu}),
        dw2_({.in = 16, .out = 16, .kernel = 3, .stride = 2, .groups = 16, .act = activation::relu}),
        pool_(2) {
    register_module("conv", conv_);
    register_module("dw", dw_);
    register_module("project", project_);
    register_module("add", add_);
    register_module("cat", cat_);
    register_module("pool", pool_);
    register_module("down", down_);
    register_module("dw2", dw2_);
    register_module("gap", gap_);
  }
  variable forward(const variable& x) override {
    const variable a = conv_(x);
    const variable r = add_(project_(dw_(a)), a);
    return gap_(dw2_(down_(pool_(cat_({r, a})))));
  }

 private:
  nn::conv_bn<Q> conv_, dw_, project_;
  nn::quantized_add<Q> add_;
  nn::quantized_concat<Q> cat_;
  nn::conv_bn<Q> down_, dw2_;
  nn::max_pool2d pool_;
  nn::global_avg_pool<Q> gap_;
};

array<float> images(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::mt19937& rng) {
  return nn_test::random_array<float>(shape_t{n, c, h, w}, rng, -1.5, 2.0);
}

/// Random weights and BN statistics, then calibration on n random c x h x w images (in
/// that order of draws from rng): a converted model's starting state.
void initialize(nn::module& m, std::mt19937& rng, std::size_t n, std::size_t c, std::size_t h, std::size_t w) {
  m.reset_parameters(rng);
  randomize_bn(m, rng);
  calibrate(m, images(n, c, h, w, rng));
}

}  // namespace

TEST_CASE("int8_model equals the fake-quant graph of a conv + BN + ReLU network within one step") {
  std::mt19937 rng(1);
  net<nn::conv_bn<Q>> m(8 * 9 * 7, nn::conv_bn_config{.in = 2, .out = 8, .kernel = 3, .act = activation::relu});
  initialize(m, rng, 16, 2, 9, 7);
  const agreement a = compare(m, images(20, 2, 9, 7, rng), 8);
  CHECK(a.max_steps == 0);
  CHECK(a.exact == a.total);
}

TEST_CASE("int8_model runs every step kind: depthwise, add, pooling, strided conv, flatten reorder") {
  std::mt19937 rng(2);
  net<mixed_block> m(16);
  initialize(m, rng, 32, 3, 13, 11);
  const runtime::graph g = runtime::build_graph(m, images(1, 3, 13, 11, rng));
  std::size_t kinds = 0;
  for (std::size_t k = 0; k < std::variant_size_v<runtime::step>; ++k) {
    kinds += std::any_of(g.steps.begin(), g.steps.end(), [k](const runtime::step& s) { return s.index() == k; });
  }
  CHECK(kinds == std::variant_size_v<runtime::step>);
  // Batches larger than max_batch run in chunks.
  const agreement a = compare(m, images(9, 3, 13, 11, rng), 4);
  CHECK(a.max_steps == 0);
  CHECK(a.exact == a.total);
}

TEST_CASE("dense after flatten of a multi-pixel image reorders its weights to NHWC") {
  std::mt19937 rng(3);
  net<nn::conv_bn<Q>> m(4 * 5 * 6, nn::conv_bn_config{.in = 1, .out = 4, .kernel = 3});
  initialize(m, rng, 16, 1, 5, 6);
  const agreement a = compare(m, images(5, 1, 5, 6, rng));
  CHECK(a.max_steps == 0);
  CHECK(a.exact == a.total);
}

TEST_CASE("int8_model runs large batches in cache-sized chunks of images, with the same result") {
  std::mt19937 rng(9);
  // conv 3x3 1 -> 16 on 28x28: the largest step reads 784 and writes 12544 bytes per image.
  net<nn::conv_bn<Q>> m(16 * 28 * 28, nn::conv_bn_config{.in = 1, .out = 16, .kernel = 3, .act = activation::relu});
  initialize(m, rng, 8, 1, 28, 28);
  const runtime::graph g = runtime::build_graph(m, images(1, 1, 28, 28, rng));
  runtime::int8_model chunked(g, 64), one(g, 1);
  const runtime::int8_model few(g, 5);
  const std::size_t chunk = runtime::int8_model::cache_chunk_bytes / (784 + 12544);
  REQUIRE(chunk < 64);
  CHECK(chunked.chunk_images() == chunk);
  CHECK(one.chunk_images() == 1);
  CHECK(few.chunk_images() == 5);  // max_batch caps the chunk
  CHECK(chunked.activation_bytes() < 64 * one.activation_bytes());  // planned for the chunk, not max_batch
  const std::size_t batch = chunk + 11;  // one full chunk and a partial one
  const array<float> x = images(batch, 1, 28, 28, rng);
  std::vector<float> a(batch * 10), b(batch * 10);
  chunked.run(std::span<const float>(x.data(), x.size()), batch, a);
  one.run(std::span<const float>(x.data(), x.size()), batch, b);
  CHECK(a == b);
}

TEST_CASE("int8_model::run allocates nothing") {
  std::mt19937 rng(4);
  net<mixed_block> m(16);
  m.reset_parameters(rng);
  calibrate(m, images(8, 3, 13, 11, rng));
  runtime::int8_model int8(runtime::build_graph(m, images(1, 3, 13, 11, rng)), 3);
  const array<float> x = images(7, 3, 13, 11, rng);
  std::vector<float> logits(7 * 10);
  int8.run(std::span<const float>(x.data(), x.size()), 7, logits);  // warm-up (nothing lazy, but be fair)
  const std::size_t before = xquant_test::allocation_count();
  int8.run(std::span<const float>(x.data(), x.size()), 7, logits);
  int8.run(std::span<const float>(x.data(), 3 * 13 * 11), 1, std::span<float>(logits.data(), 10));
  CHECK(xquant_test::allocation_count() - before == 0);
  CHECK(int8.activation_bytes() > 0);
}

TEST_CASE("int8_model rejects wrong sizes and NaN input") {
  std::mt19937 rng(5);
  net<nn::conv_bn<Q>> m(2 * 4 * 4, nn::conv_bn_config{.in = 1, .out = 2, .kernel = 3});
  m.reset_parameters(rng);
  calibrate(m, images(4, 1, 4, 4, rng));
  runtime::int8_model int8(runtime::build_graph(m, images(1, 1, 4, 4, rng)), 2);
  std::vector<float> x(2 * 16, 0.5f), logits(2 * 10);
  CHECK_THROWS_AS(int8.run(std::span<const float>(x.data(), 31), 2, logits), shape_error);
  CHECK_THROWS_AS(int8.run(x, 2, std::span<float>(logits.data(), 19)), shape_error);
  x[7] = std::nanf("");
  CHECK_THROWS_AS(int8.run(x, 2, logits), numeric_error);
  CHECK_THROWS_AS(runtime::int8_model(runtime::build_graph(m, images(1, 1, 4, 4, rng)), 0), value_error);
}

TEST_CASE("conversion names the layer that has no integer form") {
  std::mt19937 rng(6);
  class fp32_inside : public nn::module {
   public:
    fp32_inside() {
      register_module("stub", stub_);
      register_module("conv", conv_);
      register_module("flatten", flatten_);
      register_module("fc", fc_);
    }
    variable forward(const variable& x) override { return fc_(flatten_(conv_(stub_(x)))); }
    nn::quant_stub<Q> stub_;
    nn::conv_bn<> conv_{nn::conv_bn_config{.in = 1, .out = 2, .kernel = 3}};
    nn::flatten flatten_;
    nn::linear<Q> fc_{{.in = 32, .out = 3}};
  } m;
  m.reset_parameters(rng);
  calibrate(m, images(2, 1, 4, 4, rng));
  try {
    (void)runtime::build_graph(m, images(1, 1, 4, 4, rng));
    FAIL("expected value_error");
  } catch (const value_error& e) {
    CHECK(std::string(e.what()).find("'conv'") != std::string::npos);
    CHECK(std::string(e.what()).find("no_quant") != std::string::npos);
  }
}
