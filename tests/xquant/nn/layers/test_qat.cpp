// Quantization-aware training in the layer templates: conv2d<Q>, linear<Q>, conv_bn<Q>
// (BatchNorm folding), quant_stub, quantized_add, quantized_concat, global_avg_pool<Q>,
// the freeze switches, checkpoints, LSQ bundles, and the int8 agreement of a conv+BN+ReLU
// block.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/kernels/fixed_point.hpp"
#include "xquant/kernels/reference/requantize.hpp"
#include "xquant/nn/functional/conv2d.hpp"
#include "xquant/nn/functional/fake_quant.hpp"
#include "xquant/nn/functional/linear.hpp"
#include "xquant/nn/functional/loss.hpp"
#include "xquant/nn/functional/pooling.hpp"
#include "xquant/nn/layers.hpp"
#include "xquant/nn/layers/qat.hpp"
#include "xquant/optim/sgd.hpp"
#include "xquant/quant/choose_params.hpp"
#include "xquant/quant/quantize.hpp"

using namespace xquant;
using namespace nn_test;
using autograd::variable;

namespace {

using W8 = w8a8::weight;
using A8 = w8a8::activation;

array<float> rand_f(const shape_t& shape, std::mt19937& rng, double lo = -1, double hi = 1) {
  return random_array<float>(shape, rng, lo, hi);
}

/// The parameters a fresh moving-average observer gives after its first batch y.
template <class S>
quant_params first_batch_params(const array<float>& y) {
  moving_average_minmax_observer<S> obs;
  obs.observe(y);
  return obs.params();
}

std::vector<std::string> names(const std::vector<nn::parameter_ref>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.name);
  return out;
}
std::vector<std::string> names(const std::vector<nn::buffer_ref>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.name);
  return out;
}

/// Sets a BatchNorm's parameters and running statistics to random, non-trivial values.
void randomize_bn(nn::batch_norm2d& bn, std::mt19937& rng) {
  std::uniform_real_distribution<float> g(0.5f, 1.5f), b(-0.3f, 0.3f), m(-0.2f, 0.2f), v(0.2f, 2.0f);
  for (auto& x : bn.weight().value()) x = g(rng);
  for (auto& x : bn.bias().value()) x = b(rng);
  for (auto& x : bn.running_mean()) x = m(rng);
  for (auto& x : bn.running_var()) x = v(rng);
}

/// A small QAT-able model: stub, conv_bn (ReLU), max pool, conv_bn, GAP, linear.
template <class Q>
class tiny_qat_model : public nn::sequential, public nn::qat_control {
 public:
  tiny_qat_model() {
    emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 1, .out = 4, .kernel = 3, .act = nn::activation::relu});
    emplace<nn::max_pool2d>(2);
    emplace<nn::conv_bn<Q>>(nn::conv_bn_config{.in = 4, .out = 6, .kernel = 3, .act = nn::activation::relu6});
    emplace<nn::global_avg_pool<Q>>();
    emplace<nn::linear<Q>>(nn::linear_config{.in = 6, .out = 3});
    if constexpr (nn::is_quantized_v<Q>) register_module("quant", stub_);
  }
  variable forward(const variable& x) override { return nn::sequential::forward(stub_(x)); }
  void set_observers_frozen(bool on) override {
    stub_.set_observers_frozen(on);
    for (std::size_t i = 0; i < size(); ++i) nn::freeze_observers((*this)[i], on);
  }
  void set_bn_frozen(bool on) override {
    for (std::size_t i = 0; i < size(); ++i) nn::freeze_bn((*this)[i], on);
  }
  nn::quant_stub<Q> stub_;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// conv2d<Q>, linear<Q>
// ---------------------------------------------------------------------------------------

TEST_CASE("conv2d<w8a8>: same parameter names as FP32, quantizer buffers, no_quant has none") {
  nn::conv2d<> fp({.in = 3, .out = 5, .kernel = 3, .padding = 1});
  nn::conv2d<w8a8> q({.in = 3, .out = 5, .kernel = 3, .padding = 1});
  CHECK(names(fp.parameters()) == names(q.parameters()));
  CHECK(fp.buffers().empty());
  CHECK(names(q.buffers()) == std::vector<std::string>{"weight_fake_quant.scale", "weight_fake_quant.zero_point",
                                                        "activation_post_process.scale",
                                                        "activation_post_process.zero_point"});
  CHECK(q.weight_quantizer().channels() == 5);  // per output channel
  nn::conv2d<w8a8> no_out({.in = 3, .out = 5, .kernel = 3, .quantize_output = false});
  CHECK(no_out.buffers().size() == 2);
  static_assert(sizeof(nn::conv2d<>) < sizeof(nn::conv2d<w8a8>));
}

TEST_CASE("conv2d<w8a8> forward == FP32 conv of the fake-quantized weight, ReLU, then the output fake-quant") {
  std::mt19937 rng(11);
  nn::conv2d<w8a8> q({.in = 3, .out = 5, .kernel = 3, .stride = 2, .padding = 1, .act = nn::activation::relu});
  q.reset_parameters(rng);
  const array<float> x = rand_f({2, 3, 9, 9}, rng);

  const quant_params pw = nn::weight_fake_quant<W8>::params_for(q.weight().value());
  const variable wq = nn::functional::fake_quant<W8>(q.weight(), pw);
  const variable ref = nn::functional::relu(nn::functional::conv2d(variable(x), wq, q.bias(), q.options()));
  const variable y = q(variable(x));  // training mode: the observer's first batch sets the range
  const quant_params pa = first_batch_params<A8>(ref.value());
  CHECK(q.output_params() == pa);
  CHECK(q.weight_params() == pw);
  CHECK(bit_identical(y.value(), nn::functional::fake_quant<A8>(ref, pa).value()));
  CHECK(*std::min_element(y.value().begin(), y.value().end()) == 0.0f);  // quantizer after the ReLU

  // Gradients reach weight and bias through the estimator.
  autograd::backward(autograd::sum(q(variable(x))));
  CHECK(q.weight().has_grad());
  CHECK(q.bias()->has_grad());
}

TEST_CASE("conv2d<no_quant> with a fused activation is the FP32 conv followed by the activation") {
  std::mt19937 rng(12);
  nn::conv2d<> c({.in = 2, .out = 3, .kernel = 3, .padding = 1, .act = nn::activation::relu6});
  c.reset_parameters(rng);
  const array<float> x = rand_f({2, 2, 5, 5}, rng, -4, 4);
  const variable ref = nn::functional::relu6(nn::functional::conv2d(variable(x), c.weight(), c.bias(), c.options()));
  CHECK(bit_identical(c(variable(x)).value(), ref.value()));
}

TEST_CASE("linear<w8a8> forward == FP32 linear of the fake-quantized weight and the output fake-quant") {
  std::mt19937 rng(13);
  nn::linear<w8a8> q({.in = 7, .out = 4, .act = nn::activation::relu});
  q.reset_parameters(rng);
  nn::linear<> fp({.in = 7, .out = 4});
  CHECK(names(fp.parameters()) == names(q.parameters()));
  const array<float> x = rand_f({5, 7}, rng);
  const variable wq = nn::functional::fake_quant<W8>(q.weight(), nn::weight_fake_quant<W8>::params_for(q.weight().value()));
  const variable ref = nn::functional::relu(nn::functional::linear(variable(x), wq, q.bias()));
  const variable y = q(variable(x));
  CHECK(bit_identical(y.value(), nn::functional::fake_quant<A8>(ref, first_batch_params<A8>(ref.value())).value()));

  // Eval mode / frozen: the range no longer moves.
  const quant_params before = q.output_params();
  q.set_observers_frozen(true);
  (void)q(variable(rand_f({5, 7}, rng, -10, 10)));
  CHECK(q.output_params() == before);
  q.set_observers_frozen(false);
  q.eval();
  (void)q(variable(rand_f({5, 7}, rng, -10, 10)));
  CHECK(q.output_params() == before);
}

// ---------------------------------------------------------------------------------------
// conv_bn<Q>: BatchNorm folding
// ---------------------------------------------------------------------------------------

TEST_CASE("conv_bn<w8a8>: FP32 parameter and BN buffer names, plus quantizer buffers") {
  nn::conv_bn<> fp({.in = 3, .out = 4, .kernel = 3, .act = nn::activation::relu});
  nn::conv_bn<w8a8> q({.in = 3, .out = 4, .kernel = 3, .act = nn::activation::relu});
  CHECK(names(fp.parameters()) == names(q.parameters()));
  CHECK(names(fp.buffers()) == std::vector<std::string>{"bn.running_mean", "bn.running_var"});
  CHECK(names(q.buffers()) == std::vector<std::string>{"conv.weight_fake_quant.scale",
                                                       "conv.weight_fake_quant.zero_point", "bn.running_mean",
                                                       "bn.running_var", "activation_post_process.scale",
                                                       "activation_post_process.zero_point"});
}

TEST_CASE("conv_bn<w8a8> in eval / frozen-BN mode == conv(x, fq(w_fold)) + b_fold") {
  std::mt19937 rng(21);
  for (const std::size_t groups : {std::size_t{1}, std::size_t{4}}) {
    CAPTURE(groups);
    nn::conv_bn<w8a8> q({.in = 4, .out = 4, .kernel = 3, .stride = 1, .groups = groups});
    q.reset_parameters(rng);
    randomize_bn(q.bn(), rng);
    q.output_quantizer().disable();  // compare before the output rounding (float tolerance)
    const array<float> x = rand_f({2, 4, 7, 7}, rng);

    const array<float> w_fold = q.folded_weight();
    const array<float> b_fold = q.folded_bias();
    const array<float> s = q.fold_factors();
    for (std::size_t o = 0; o < 4; ++o) {
      const float expect_s = q.bn().weight().value()(o) / std::sqrt(q.bn().running_var()(o) + 1e-5f);
      CHECK(s(o) == doctest::Approx(expect_s).epsilon(1e-6));
      CHECK(b_fold(o) == doctest::Approx(q.bn().bias().value()(o) - q.bn().running_mean()(o) * expect_s).epsilon(1e-6));
      CHECK(w_fold(o, 0, 1, 1) == q.conv().weight().value()(o, 0, 1, 1) * s(o));
    }
    const quant_params pw = q.weight_params();
    const variable wq = nn::functional::fake_quant<W8>(variable(w_fold), pw);
    const variable bias_var(b_fold);
    const array<float> ref =
        nn::functional::conv2d(variable(x), wq, &bias_var, q.conv().options()).value();

    q.eval();
    const array<float> y_eval = q(variable(x)).value();
    q.train();
    q.freeze_bn();
    const array<float> mean_before = q.bn().running_mean();
    const array<float> y_frozen = q(variable(x)).value();
    CHECK(bit_identical(q.bn().running_mean(), mean_before));  // frozen: no update
    // Evaluation computes the folded form itself; frozen-BN training divides by s and
    // applies BN, equal up to float32 rounding.
    CHECK(bit_identical(y_eval, ref));
    double max_err = 0, max_ref = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      max_err = std::max(max_err, double(std::abs(y_frozen.data()[i] - ref.data()[i])));
      max_ref = std::max(max_ref, double(std::abs(ref.data()[i])));
    }
    CHECK(max_err <= 1e-5 * std::max(1.0, max_ref));
    CHECK(q.conv().weight_quantizer().params() == pw);  // the forward used exactly these parameters
  }
}

TEST_CASE("conv_bn<w8a8> in training mode normalises with batch statistics and updates the running ones") {
  std::mt19937 rng(22);
  nn::conv_bn<w8a8> q({.in = 3, .out = 5, .kernel = 3});
  q.reset_parameters(rng);
  randomize_bn(q.bn(), rng);
  q.output_quantizer().disable();
  const array<float> x = rand_f({8, 3, 6, 6}, rng, -2, 3);
  const array<float> var_before = q.bn().running_var();
  variable xv(x);
  const variable y = q(xv);
  CHECK_FALSE(bit_identical(q.bn().running_var(), var_before));
  // Per channel: mean beta, (biased) standard deviation |gamma| (up to eps and float).
  const std::size_t m = 8 * 6 * 6;
  for (std::size_t c = 0; c < 5; ++c) {
    double sum = 0, sq = 0;
    for (std::size_t n = 0; n < 8; ++n)
      for (std::size_t i = 0; i < 36; ++i) sum += y.value().data()[(n * 5 + c) * 36 + i];
    const double mean = sum / double(m);
    for (std::size_t n = 0; n < 8; ++n)
      for (std::size_t i = 0; i < 36; ++i) sq += std::pow(y.value().data()[(n * 5 + c) * 36 + i] - mean, 2);
    CHECK(mean == doctest::Approx(q.bn().bias().value()(c)).epsilon(1e-4).scale(1));
    CHECK(std::sqrt(sq / double(m)) == doctest::Approx(q.bn().weight().value()(c)).epsilon(1e-3));
  }
  // The gradient reaches the conv weight and both BN parameters (gamma also through the fold).
  autograd::backward(autograd::sum(autograd::mul(y, y)));
  CHECK(q.conv().weight().has_grad());
  CHECK(q.bn().weight().has_grad());
  CHECK(q.bn().bias().has_grad());
}

TEST_CASE("conv_bn<no_quant>: unchanged FP32 forward, freeze_bn uses the running statistics") {
  std::mt19937 rng(23);
  nn::conv_bn<> c({.in = 2, .out = 3, .kernel = 3, .act = nn::activation::relu});
  c.reset_parameters(rng);
  randomize_bn(c.bn(), rng);
  const array<float> x = rand_f({4, 2, 5, 5}, rng);
  nn::conv2d<> conv({.in = 2, .out = 3, .kernel = 3, .padding = 1, .bias = false});
  conv.weight().value() = c.conv().weight().value();
  nn::batch_norm2d bn(3);
  bn.weight().value() = c.bn().weight().value();
  bn.bias().value() = c.bn().bias().value();
  bn.running_mean() = c.bn().running_mean();
  bn.running_var() = c.bn().running_var();
  CHECK(bit_identical(c(variable(x)).value(), nn::functional::relu(bn(conv(variable(x)))).value()));
  c.freeze_bn();
  bn.eval();
  const array<float> mean = c.bn().running_mean();
  CHECK(bit_identical(c(variable(x)).value(), nn::functional::relu(bn(conv(variable(x)))).value()));
  CHECK(bit_identical(c.bn().running_mean(), mean));
}

// ---------------------------------------------------------------------------------------
// quant_stub, quantized_add, quantized_concat, global_avg_pool<Q>
// ---------------------------------------------------------------------------------------

TEST_CASE("quantized_add: FP32 is add (+ ReLU), QAT adds the output fake-quant after the ReLU") {
  std::mt19937 rng(31);
  const variable a(rand_f({2, 3, 4, 4}, rng)), b(rand_f({2, 3, 4, 4}, rng));
  nn::quantized_add<> fp(nn::activation::relu);
  CHECK(fp.buffers().empty());
  const variable sum_relu = nn::functional::relu(autograd::add(a, b));
  CHECK(bit_identical(fp(a, b).value(), sum_relu.value()));
  nn::quantized_add<> plain;
  CHECK(bit_identical(plain(a, b).value(), autograd::add(a, b).value()));
  CHECK_THROWS_AS(fp.forward(a), value_error);

  nn::quantized_add<w8a8> q(nn::activation::relu);
  CHECK(names(q.buffers()) ==
        std::vector<std::string>{"activation_post_process.scale", "activation_post_process.zero_point"});
  const variable y = q(a, b);
  const quant_params p = first_batch_params<A8>(sum_relu.value());
  CHECK(q.output_quantizer().params() == p);
  CHECK(p.zero_point[0] == 0);  // range measured after the ReLU
  CHECK(bit_identical(y.value(), nn::functional::fake_quant<A8>(sum_relu, p).value()));
  // Gradients to both inputs.
  variable ga(a.value(), true), gb(b.value(), true);
  autograd::backward(autograd::sum(q(ga, gb)));
  CHECK(ga.has_grad());
  CHECK(gb.has_grad());
}

TEST_CASE("quant_stub, quantized_concat and global_avg_pool<w8a8> quantize their outputs") {
  std::mt19937 rng(32);
  const array<float> x = rand_f({2, 3, 4, 4}, rng, -3, 3);
  nn::quant_stub<> fp_stub;
  CHECK(bit_identical(fp_stub(variable(x)).value(), x));
  nn::quant_stub<w8a8> stub;
  CHECK(bit_identical(stub(variable(x)).value(),
                      nn::functional::fake_quant<A8>(variable(x), first_batch_params<A8>(x)).value()));

  nn::global_avg_pool<w8a8> gap;
  const variable g = nn::functional::global_avg_pool(variable(x));
  CHECK(bit_identical(gap(variable(x)).value(),
                      nn::functional::fake_quant<A8>(g, first_batch_params<A8>(g.value())).value()));
  nn::global_avg_pool fp_gap;
  CHECK(bit_identical(fp_gap(variable(x)).value(), g.value()));
  CHECK(fp_gap.buffers().empty());

  nn::quantized_concat<w8a8> cat;
  const variable x2(rand_f({2, 2, 4, 4}, rng, 0, 6));
  const variable c = nn::functional::concat(std::vector<variable>{variable(x), x2});
  CHECK(bit_identical(cat({variable(x), x2}).value(),
                      nn::functional::fake_quant<A8>(c, first_batch_params<A8>(c.value())).value()));
}

// ---------------------------------------------------------------------------------------
// model-level switches and checkpoints
// ---------------------------------------------------------------------------------------

TEST_CASE("freeze_observers / freeze_bn reach every quantizer and conv_bn of a model") {
  std::mt19937 rng(41);
  tiny_qat_model<w8a8> m;
  m.reset_parameters(rng);
  (void)m(variable(rand_f({4, 1, 8, 8}, rng)));
  nn::freeze_observers(m);
  nn::freeze_bn(m);
  std::vector<array<float>> before;
  for (auto& b : m.buffers()) before.push_back(*b.value);
  (void)m(variable(rand_f({4, 1, 8, 8}, rng, -5, 5)));
  const auto after = m.buffers();
  for (std::size_t i = 0; i < after.size(); ++i) {
    CAPTURE(after[i].name);
    if (after[i].name.find("weight_fake_quant") != std::string::npos) continue;  // follows the weights
    CHECK(bit_identical(*after[i].value, before[i]));
  }
  nn::freeze_observers(m, false);
  (void)m(variable(rand_f({4, 1, 8, 8}, rng, -5, 5)));
  const auto moved = m.buffers();
  REQUIRE(moved[moved.size() - 2].name == "quant.activation_post_process.scale");
  CHECK_FALSE(bit_identical(*moved[moved.size() - 2].value, before[moved.size() - 2]));
}

TEST_CASE("checkpoint: a QAT model round-trips every quantizer's parameters") {
  std::mt19937 rng(42);
  tiny_qat_model<w8a8> m;
  m.reset_parameters(rng);
  for (int i = 0; i < 3; ++i) (void)m(variable(rand_f({4, 1, 8, 8}, rng, -2, 2)));
  m.eval();
  const variable x(rand_f({3, 1, 8, 8}, rng));
  const array<float> y = m(x).value();
  temp_file f("roundtrip");
  io::save_checkpoint(f.path, m);

  tiny_qat_model<w8a8> back;
  io::load_checkpoint(f.path, back);
  const auto a = m.buffers(), b = back.buffers();
  REQUIRE(a.size() == b.size());
  std::size_t quantizer_buffers = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].name);
    CHECK(a[i].name == b[i].name);
    CHECK(bit_identical(*a[i].value, *b[i].value));
    quantizer_buffers += a[i].name.find("fake_quant") != std::string::npos ||
                         a[i].name.find("activation_post_process") != std::string::npos;
  }
  CHECK(quantizer_buffers == 2 * (2 + 2 + 1 + 2 + 1));  // 2 conv_bn (w + out), gap, linear (w + out), stub
  auto* lin = dynamic_cast<nn::linear<w8a8>*>(&back[4]);
  REQUIRE(lin != nullptr);
  CHECK(lin->output_params() == dynamic_cast<nn::linear<w8a8>&>(m[4]).output_params());
  back.eval();
  CHECK(bit_identical(back(x).value(), y));  // the loaded QAT model computes the same thing
}

TEST_CASE("checkpoint: an FP32 checkpoint loads into the QAT model (quantizer buffers stay initial)") {
  std::mt19937 rng(43);
  tiny_qat_model<no_quant> fp;
  fp.reset_parameters(rng);
  fp.train();
  (void)fp(variable(rand_f({4, 1, 8, 8}, rng)));  // non-trivial BN running statistics
  temp_file f("fp32");
  io::save_checkpoint(f.path, fp);

  tiny_qat_model<w8a8> q;
  CHECK(names(q.parameters()) == names(fp.parameters()));
  CHECK_THROWS_AS(io::load_checkpoint(f.path, q), io_error);  // strict by default: quantizer buffers missing
  std::vector<std::string> missing;
  io::load_checkpoint(f.path, q, io::load_options{.allow_missing_buffers = true, .missing_buffers = &missing});
  CHECK(missing.size() == 16);
  for (const auto& name : missing) {
    CAPTURE(name);
    CHECK((name.find("weight_fake_quant") != std::string::npos ||
           name.find("activation_post_process") != std::string::npos));
  }
  const auto pf = fp.parameters(), pq = q.parameters();
  for (std::size_t i = 0; i < pf.size(); ++i) CHECK(bit_identical(pf[i].var->value(), pq[i].var->value()));
  for (auto& b : q.buffers()) {
    if (b.name.ends_with(".scale")) CHECK(b.value->data()[0] == 1.0f);
    if (b.name.ends_with("running_var")) {
      bool found = false;
      for (auto& fb : fp.buffers()) {
        if (fb.name == b.name) found = bit_identical(*fb.value, *b.value);
      }
      CHECK(found);
    }
  }
  // The other direction still fails: a QAT checkpoint has buffers the FP32 model lacks.
  temp_file g("qat");
  io::save_checkpoint(g.path, q);
  CHECK_THROWS_AS(io::load_checkpoint(g.path, fp, io::load_options{.allow_missing_buffers = true}), io_error);
}

// ---------------------------------------------------------------------------------------
// LSQ bundles: learned step sizes in the layers
// ---------------------------------------------------------------------------------------

namespace {

using w4a4_lsq = wa_bundle<4, 4, lsq>;
using lsq_model = tiny_qat_model<w4a4_lsq>;

/// The LSQ step-size parameters of a model, by name.
std::vector<nn::parameter_ref> step_sizes(nn::module& m) {
  std::vector<nn::parameter_ref> out;
  for (auto& p : m.parameters()) {
    if (p.name.ends_with("fake_quant.scale") || p.name.ends_with("activation_post_process.scale")) out.push_back(p);
  }
  return out;
}

/// One SGD step on a cross-entropy loss of random labels.
void train_step(nn::module& m, optim::sgd& opt, std::mt19937& rng) {
  const variable x(rand_f({8, 1, 8, 8}, rng, -2, 2));
  std::vector<int> labels(8);
  for (auto& l : labels) l = std::uniform_int_distribution<int>(0, 2)(rng);
  opt.zero_grad();
  autograd::backward(nn::functional::softmax_cross_entropy(m(x), std::span<const int>(labels)));
  opt.step();
}

}  // namespace

TEST_CASE("lsq bundle: the layers hold LSQ quantizers, initialised from the first training batch") {
  static_assert(std::is_same_v<nn::weight_quantizer_t<w4a4_lsq>, nn::lsq_weight_fake_quant<w4a4_lsq::weight>>);
  static_assert(
      std::is_same_v<nn::activation_quantizer_t<w4a4_lsq>, nn::lsq_activation_fake_quant<w4a4_lsq::activation>>);
  static_assert(std::is_same_v<nn::weight_quantizer_t<w8a8>, nn::weight_fake_quant<W8>>);
  std::mt19937 rng(51);
  lsq_model m;
  m.reset_parameters(rng);
  // Every quantizer's step size is a parameter: 2 conv_bn (w + out), gap, linear (w + out), stub.
  const auto steps = step_sizes(m);
  CHECK(steps.size() == 8);
  CHECK(steps[0].name == "0.conv.weight_fake_quant.scale");
  CHECK(steps[0].var->size() == 4);  // per output channel
  CHECK(steps[1].name == "0.activation_post_process.scale");
  CHECK(steps[1].var->size() == 1);
  CHECK_FALSE(m.stub_.output_quantizer().initialized());
  m.eval();
  CHECK_THROWS_AS((void)m(variable(rand_f({2, 1, 8, 8}, rng))), value_error);  // not initialised yet

  m.train();
  auto& block = dynamic_cast<nn::conv_bn<w4a4_lsq>&>(m[0]);
  const array<float> w_fold = block.folded_weight();  // before the forward updates BN's statistics
  const array<float> x = rand_f({4, 1, 8, 8}, rng, -2, 2);
  (void)m(variable(x));
  auto& stub = m.stub_.output_quantizer();
  CHECK(stub.initialized());
  // The input can be negative: step size and zero point are choose_params' for the
  // batch's [min, max] (nn::layer_lsq_init), where a min/max quantizer would start.
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  CHECK(stub.params() == choose_params<w4a4_lsq::activation>(*lo, *hi));
  CHECK(stub.params().zero_point[0] > 0);
  // After ReLU / ReLU6 nothing is negative: zero point at qmin, all levels positive.
  CHECK(block.output_params().zero_point[0] == w4a4_lsq::activation::qmin);
  // Weights: per output channel, from the folded weights' min/max.
  const quant_params pw = block.weight_params();
  CHECK(pw == nn::weight_fake_quant<w4a4_lsq::weight>::params_for(w_fold));
  // Conversion accessors return the step sizes the forward uses.
  CHECK(pw.axis == 0);
  for (std::size_t o = 0; o < 4; ++o) CHECK(pw.scale[o] == block.weight_quantizer().scale().value()(o));
  CHECK(pw.zero_point == std::vector<std::int32_t>(4, 0));
  CHECK(block.output_params().scale[0] == block.output_quantizer().scale().value()(0));
}

TEST_CASE("lsq bundle trains: every step size gets a gradient and changes under SGD") {
  std::mt19937 rng(52);
  lsq_model m;
  m.reset_parameters(rng);
  m.train();
  (void)m(variable(rand_f({8, 1, 8, 8}, rng, -2, 2)));  // initialise
  std::vector<array<float>> before;
  for (auto& p : step_sizes(m)) before.push_back(p.var->value());
  optim::sgd opt(m.parameters(), {.lr = 0.01, .momentum = 0.9, .weight_decay = 0});
  train_step(m, opt, rng);
  const auto steps = step_sizes(m);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    CAPTURE(steps[i].name);
    REQUIRE(steps[i].var->has_grad());
    CHECK(std::any_of(steps[i].var->grad().begin(), steps[i].var->grad().end(), [](float g) { return g != 0; }));
    CHECK_FALSE(bit_identical(steps[i].var->value(), before[i]));
  }
}

TEST_CASE("lsq bundle: a checkpoint round-trips the learned step sizes and zero points") {
  std::mt19937 rng(53);
  lsq_model m;
  m.reset_parameters(rng);
  m.train();
  (void)m(variable(rand_f({8, 1, 8, 8}, rng, -2, 2)));
  optim::sgd opt(m.parameters(), {.lr = 0.01, .momentum = 0.9, .weight_decay = 0});
  for (int i = 0; i < 2; ++i) train_step(m, opt, rng);
  m.eval();
  const variable x(rand_f({3, 1, 8, 8}, rng));
  const array<float> y = m(x).value();
  temp_file f("lsq");
  io::save_checkpoint(f.path, m);

  lsq_model back;
  io::load_checkpoint(f.path, back);  // strict: every step size, zero point and flag is in the file
  const auto a = step_sizes(m), b = step_sizes(back);
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(bit_identical(a[i].var->value(), b[i].var->value()));
  CHECK(back.stub_.output_quantizer().initialized());
  CHECK(back.stub_.output_quantizer().params() == m.stub_.output_quantizer().params());
  back.eval();
  CHECK(bit_identical(back(x).value(), y));  // no re-initialisation, the same computation
  back.train();
  const quant_params p = back.stub_.output_quantizer().params();
  (void)back(variable(rand_f({4, 1, 8, 8}, rng, -9, 9)));  // a training forward does not re-initialise
  CHECK(back.stub_.output_quantizer().params() == p);
}

TEST_CASE("lsq bundle: freeze_observers stops the activation step sizes, weight step sizes keep learning") {
  std::mt19937 rng(54);
  lsq_model m;
  m.reset_parameters(rng);
  m.train();
  (void)m(variable(rand_f({8, 1, 8, 8}, rng, -2, 2)));
  optim::sgd opt(m.parameters(), {.lr = 0.01, .momentum = 0.9, .weight_decay = 0});
  for (int i = 0; i < 2; ++i) train_step(m, opt, rng);  // momentum buffers are non-zero now
  nn::freeze_observers(m);
  CHECK(m.stub_.output_quantizer().frozen());
  std::vector<array<float>> before;
  for (auto& p : step_sizes(m)) before.push_back(p.var->value());
  for (int i = 0; i < 3; ++i) train_step(m, opt, rng);
  const auto steps = step_sizes(m);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    CAPTURE(steps[i].name);
    const bool weight = steps[i].name.find("weight_fake_quant") != std::string::npos;
    CHECK(bit_identical(steps[i].var->value(), before[i]) == !weight);
    CHECK(steps[i].var->has_grad() == weight);
  }
  nn::freeze_observers(m, false);  // learning again
  train_step(m, opt, rng);
  CHECK_FALSE(bit_identical(m.stub_.output_quantizer().scale().value(), before.back()));
}

// ---------------------------------------------------------------------------------------
// The must-show test: fake-quant forward == integer inference, at 8 bits, frozen ranges
// ---------------------------------------------------------------------------------------

namespace {

/// The conv+BN+ReLU block computed in integers, the way an int8 runtime does it:
/// uint8 input (s_in, z_in), int8 weights per output channel (s_w[o], zero point 0),
/// int32 bias round(b_fold / (s_in s_w[o])), int32 accumulation of (x_q - z_in) w_q,
/// fixed-point requantization by M = s_in s_w[o] / s_out (quantize_multiplier, one
/// rounding), zero point z_out, and the ReLU as the clamp's lower bound z_out.
/// Returns the output dequantized, (q - z_out) s_out.
array<float> integer_conv_bn_relu(const array<float>& x, const quant_params& pin, const array<float>& w_fold,
                                  const quant_params& pw, const array<float>& b_fold, const quant_params& pout,
                                  std::size_t stride, std::size_t pad) {
  const array<std::uint8_t> xq = quantize<A8>(x, pin);
  const array<std::int8_t> wq = quantize<W8>(w_fold, pw);
  const std::int32_t zin = pin.zero_point[0], zout = pout.zero_point[0];
  const float sin = pin.scale[0], sout = pout.scale[0];
  const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], wd = x.shape()[3];
  const std::size_t o = w_fold.shape()[0], k = w_fold.shape()[2];
  const std::size_t oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1;
  array<float> y(shape_t{n, o, oh, ow});
  for (std::size_t oc = 0; oc < o; ++oc) {
    const float sw = pw.scale[oc];
    const auto bias = static_cast<std::int32_t>(std::lround(double(b_fold(oc)) / (double(sin) * double(sw))));
    const kernels::fixed_point_multiplier m = kernels::quantize_multiplier(sin * sw / sout);
    for (std::size_t b = 0; b < n; ++b)
      for (std::size_t i = 0; i < oh; ++i)
        for (std::size_t j = 0; j < ow; ++j) {
          std::int32_t acc = bias;
          for (std::size_t ci = 0; ci < c; ++ci)
            for (std::size_t a = 0; a < k; ++a)
              for (std::size_t bb = 0; bb < k; ++bb) {
                const long ih = long(i * stride + a) - long(pad), iw = long(j * stride + bb) - long(pad);
                if (ih < 0 || iw < 0 || ih >= long(h) || iw >= long(wd)) continue;  // padding: real 0 = z_in
                acc += (std::int32_t(xq(b, ci, std::size_t(ih), std::size_t(iw))) - zin) *
                       std::int32_t(wq(oc, ci, a, bb));
              }
          const std::uint8_t q = kernels::reference::requantize_fixed<std::uint8_t>(
              acc, m.multiplier, m.shift, zout, std::max(zout, A8::qmin), A8::qmax);
          y(b, oc, i, j) = float(std::int32_t(q) - zout) * sout;
        }
  }
  return y;
}

}  // namespace

TEST_CASE("8 bits, frozen ranges: fake-quant conv+BN+ReLU == the integer block within one step, exact on >= 99 %") {
  std::mt19937 rng(51);
  for (const std::size_t stride : {std::size_t{1}, std::size_t{2}}) {
    CAPTURE(stride);
    nn::quant_stub<w8a8> stub;
    nn::conv_bn<w8a8> block({.in = 8, .out = 16, .kernel = 3, .stride = stride, .act = nn::activation::relu});
    block.reset_parameters(rng);
    randomize_bn(block.bn(), rng);
    // Calibrate the activation ranges (BN frozen: the running statistics are the model's),
    // then freeze them, as the last QAT epoch does.
    block.freeze_bn();
    for (int i = 0; i < 4; ++i) (void)block(stub(variable(rand_f({4, 8, 12, 12}, rng, -1.5, 2.5))));
    stub.set_observers_frozen(true);
    block.set_observers_frozen(true);
    block.eval();
    stub.eval();

    const array<float> x = rand_f({4, 8, 12, 12}, rng, -1.5, 2.5);
    const array<float> y_fq = block(stub(variable(x))).value();
    const array<float> y_int =
        integer_conv_bn_relu(x, stub.output_quantizer().params(), block.folded_weight(), block.weight_params(),
                             block.folded_bias(), block.output_params(), stride, 1);
    REQUIRE(y_fq.shape() == y_int.shape());
    const float step = block.output_params().scale[0];
    std::size_t exact = 0, nonzero = 0;
    float worst = 0;
    for (std::size_t i = 0; i < y_fq.size(); ++i) {
      const float d = std::abs(y_fq.data()[i] - y_int.data()[i]);
      worst = std::max(worst, d);
      exact += d == 0.0f;
      nonzero += y_int.data()[i] != 0.0f;
    }
    MESSAGE("stride ", stride, ": ", exact, " / ", y_fq.size(), " exact, worst ", worst / step, " steps");
    CHECK(worst <= step * 1.0001f);
    CHECK(double(exact) >= 0.99 * double(y_fq.size()));
    CHECK(double(nonzero) >= 0.3 * double(y_fq.size()));  // not a trivial all-zero comparison

    // Conversion tells the block its input scale. Evaluated without gradients it then adds
    // the integer block's int32 bias and sums in float64 (exact_eval.hpp): every element
    // equal, the graph that was trained is the graph that runs.
    block.set_input_scale(stub.output_quantizer().params().scale[0]);
    autograd::no_grad_guard no_grad;
    const array<float> y_exact = block(stub(variable(x))).value();
    std::size_t equal = 0;
    for (std::size_t i = 0; i < y_exact.size(); ++i) equal += y_exact.data()[i] == y_int.data()[i];
    CHECK(equal == y_exact.size());
  }
}
