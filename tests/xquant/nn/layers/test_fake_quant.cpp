#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <unistd.h>

#include "../nn_test_util.hpp"
#include "xquant/calib/exact_mse_range.hpp"
#include "xquant/calib/minmax_observer.hpp"
#include "xquant/calib/moving_average_observer.hpp"
#include "xquant/io/checkpoint.hpp"
#include "xquant/nn/functional/fake_quant.hpp"
#include "xquant/nn/layers/fake_quant.hpp"
#include "xquant/quant/choose_params.hpp"
#include "xquant/quant/quantize.hpp"

using namespace xquant;
using namespace nn_test;
using autograd::variable;

namespace {

using act8 = scheme<unsigned_bits<8>, asymmetric>;
using act8_axis1 = scheme<unsigned_bits<8>, asymmetric, per_axis<1>>;
using w8_per_channel = scheme<narrow_bits<8>, symmetric, per_axis<0>>;
using w4_lsq = scheme<narrow_bits<4>, symmetric, per_axis<0>, lsq>;
using a4_lsq = scheme<unsigned_bits<4>, asymmetric, lsq>;
using a4 = scheme<unsigned_bits<4>, asymmetric>;

array<float> batch(std::mt19937& rng, double lo, double hi, const shape_t& shape = {4, 3, 5, 5}) {
  return random_array<float>(shape, rng, lo, hi);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// fake_quant (activations, observer)
// ---------------------------------------------------------------------------------------

TEST_CASE("fake_quant module: buffers, defaults and names") {
  nn::fake_quant<act8> fq;
  const auto buffers = fq.buffers();
  REQUIRE(buffers.size() == 2);
  CHECK(buffers[0].name == "scale");
  CHECK(buffers[1].name == "zero_point");
  CHECK(fq.parameters().empty());
  CHECK(fq.params() == quant_params::tensor(1.0f, 0));  // PyTorch FakeQuantize's initial buffers
  CHECK(fq.enabled());
  CHECK_FALSE(fq.frozen());
  CHECK(fq.observer().averaging_constant() == 0.01f);

  nn::fake_quant<act8_axis1> per_channel(3, moving_average_minmax_observer<act8_axis1>(0.5f));
  CHECK(per_channel.buffers()[0].value->shape()[0] == 3);
  CHECK(per_channel.observer().averaging_constant() == 0.5f);
  CHECK_THROWS_AS(nn::fake_quant<act8_axis1>(0), value_error);  // per axis needs the channel count
  CHECK_THROWS_AS(nn::fake_quant<act8>(2), value_error);        // per tensor has one channel
}

TEST_CASE("fake_quant module: training observes, eval does not, frozen does not") {
  std::mt19937 rng(1);
  nn::fake_quant<act8> fq;
  moving_average_minmax_observer<act8> reference;
  const array<float> b1 = batch(rng, -1.0, 2.0), b2 = batch(rng, -3.0, 5.0), b3 = batch(rng, 0.0, 9.0);

  // training: the observer sees the batch, the buffers hold its params, and the output is
  // fake_quant with them
  const variable y1 = fq(variable(b1));
  reference.observe(b1);
  CHECK(fq.params() == reference.params());
  CHECK(fq.scale()(0) == reference.params().scale[0]);
  CHECK(fq.zero_point()(0) == float(reference.params().zero_point[0]));
  CHECK(bit_identical(y1.value(), fake_quantize<act8>(b1, reference.params())));

  fq(variable(b2));
  reference.observe(b2);
  CHECK(fq.params() == reference.params());
  const quant_params after_two = fq.params();

  // eval: no observing, the last params are used
  fq.eval();
  const variable y3 = fq(variable(b3));
  CHECK(fq.params() == after_two);
  CHECK(bit_identical(y3.value(), fake_quantize<act8>(b3, after_two)));

  // frozen (in training mode): no observing either
  fq.train();
  fq.freeze();
  CHECK(fq.frozen());
  CHECK(fq.observer().frozen());  // the moving-average observer is frozen with it
  fq(variable(b3));
  CHECK(fq.params() == after_two);

  // unfrozen: observing resumes where it stopped
  fq.unfreeze();
  CHECK_FALSE(fq.observer().frozen());
  fq(variable(b3));
  reference.observe(b3);
  CHECK(fq.params() == reference.params());
  CHECK(fq.params() != after_two);
}

TEST_CASE("fake_quant module: disabled is the identity and still observes in training") {
  std::mt19937 rng(2);
  nn::fake_quant<act8> fq;
  fq.disable();
  const array<float> x = batch(rng, -1.0, 1.0);
  variable xv(x, true);
  const variable y = fq(xv);
  CHECK(y.node_ptr() == xv.node_ptr());  // the very same variable
  CHECK(fq.params() == choose_params<act8>(xt::amin(x)(), xt::amax(x)()));  // first batch sets the range
  fq.enable();
  CHECK(bit_identical(fq(variable(x)).value(), fake_quantize<act8>(x, fq.params())));
}

TEST_CASE("fake_quant module: gradient is the scheme's estimator") {
  nn::fake_quant<act8> fq;
  fq.eval();
  fq.set_params(quant_params::tensor(0.1f, 10));  // real range [-1.0, 24.5]
  variable x(array<float>{-2.0f, 0.0f, 3.0f, 30.0f}, true);
  autograd::backward(autograd::sum(fq(x)));
  CHECK(x.grad() == array<float>{0.0f, 1.0f, 1.0f, 0.0f});  // clipped STE
}

TEST_CASE("fake_quant module: per axis, with any observer type") {
  std::mt19937 rng(3);
  nn::fake_quant<act8_axis1, minmax_observer<act8_axis1>> fq(3);
  const array<float> x = batch(rng, -1.0, 4.0);
  const variable y = fq(variable(x));
  minmax_observer<act8_axis1> reference;
  reference.observe(x);
  CHECK(fq.params() == reference.params());
  CHECK(fq.params().channels() == 3);
  CHECK(bit_identical(y.value(), fake_quantize<act8_axis1>(x, reference.params())));
  fq.freeze();  // minmax_observer has no freeze(): the module's flag alone stops observing
  fq(variable(batch(rng, -9.0, 9.0)));
  CHECK(fq.params() == reference.params());
}

TEST_CASE("fake_quant module: a failed forward changes nothing (NaN, wrong channel count)") {
  std::mt19937 rng(4);
  nn::fake_quant<act8_axis1> fq(3);
  fq(variable(batch(rng, -1.0, 1.0)));
  const quant_params before = fq.params();
  array<float> bad = batch(rng, -5.0, 5.0);
  bad(1, 2, 3, 4) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(fq(variable(bad)), numeric_error);
  CHECK_THROWS_AS(fq(variable(batch(rng, -5.0, 5.0, {4, 2, 5, 5}))), shape_error);  // 2 channels, not 3
  CHECK_THROWS_AS(fq(variable(array<float>{1.0f})), shape_error);                   // no axis 1
  CHECK(fq.params() == before);
  fq.eval();
  CHECK_THROWS_AS(fq(variable(bad)), numeric_error);  // eval: the op itself rejects NaN
}

TEST_CASE("fake_quant module: the checkpoint buffers are the parameters") {
  std::mt19937 rng(5);
  nn::fake_quant<act8> fq;
  fq(variable(batch(rng, -0.7, 3.1)));
  const quant_params p = fq.params();
  REQUIRE(p.zero_point[0] != 0);
  // what a checkpoint saves
  const auto buffers = fq.buffers();
  CHECK(*buffers[0].value == array<float>{p.scale[0]});
  CHECK(*buffers[1].value == array<float>{float(p.zero_point[0])});

  // a checkpoint round trip restores them into a fresh module, whose eval forward uses them
  temp_file file("fake_quant");
  io::save_checkpoint(file.path, fq);
  nn::fake_quant<act8> restored;
  io::load_checkpoint(file.path, restored);
  CHECK(restored.params() == p);
  restored.eval();
  fq.eval();
  const array<float> x = batch(rng, -2.0, 4.0);
  CHECK(bit_identical(restored(variable(x)).value(), fq(variable(x)).value()));

  // writing the buffers directly (as a loader does) takes effect; a non-integral or
  // out-of-range zero point is rejected when read
  *restored.buffers()[1].value = array<float>{7.0f};
  CHECK(restored.params().zero_point[0] == 7);
  *restored.buffers()[1].value = array<float>{7.5f};
  CHECK_THROWS_AS(restored.params(), value_error);
  *restored.buffers()[1].value = array<float>{300.0f};
  CHECK_THROWS_AS(restored.params(), value_error);
  CHECK_THROWS_AS(restored.set_params(quant_params::tensor(0.0f, 0)), value_error);

  // reset_parameters: back to the initial state
  std::mt19937 init_rng(0);
  fq.reset_parameters(init_rng);
  CHECK(fq.params() == quant_params::tensor(1.0f, 0));
  CHECK_FALSE(fq.observer().has_data());
}

// ---------------------------------------------------------------------------------------
// weight_fake_quant
// ---------------------------------------------------------------------------------------

TEST_CASE("weight_fake_quant: parameters follow the current weights, in training and in eval") {
  std::mt19937 rng(6);
  nn::weight_fake_quant<w8_per_channel> wq(4);
  variable w(batch(rng, -0.5, 0.5, {4, 3, 3, 3}), true);
  const variable y = wq(w);
  const quant_params p = nn::weight_fake_quant<w8_per_channel>::params_for(w.value());
  minmax_observer<w8_per_channel> reference;
  reference.observe(w.value());
  CHECK(p == reference.params());
  CHECK(wq.params() == p);
  CHECK(bit_identical(y.value(), fake_quantize<w8_per_channel>(w.value(), p)));

  // the weights change (an optimizer step): the next forward follows, also in eval
  w.value() *= 3.0f;
  wq.eval();
  const variable y2 = wq(w);
  CHECK(wq.params() == nn::weight_fake_quant<w8_per_channel>::params_for(w.value()));
  CHECK(wq.params() != p);
  CHECK(bit_identical(y2.value(), fake_quantize<w8_per_channel>(w.value(), wq.params())));

  // min/max ranges never clip a weight, so the clipped-STE gradient passes everywhere
  autograd::backward(autograd::sum(y2));
  CHECK(w.grad() == array<float>(shape_t{4, 3, 3, 3}, 1.0f));

  wq.disable();
  CHECK(wq(w).node_ptr() == w.node_ptr());
  CHECK_THROWS_AS(wq(variable(array<float>(shape_t{5, 3}, 0.1f))), shape_error);  // 5 output channels, not 4
}

TEST_CASE("mse_clipping: weights take the MSE-optimal ranges, activations the MSE observer") {
  using w4_mse = scheme<narrow_bits<4>, symmetric, per_axis<0>, mse_clipping>;
  using a4_mse = scheme<unsigned_bits<4>, asymmetric, mse_clipping>;
  std::mt19937 rng(9);
  // Gaussian weights with an outlier in channel 1: clipping it pays at 4 bits.
  array<float> values(shape_t{2, 512});
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : values) v = normal(rng);
  values(1, 3) = 5.0f;
  variable w(values, true);
  nn::weight_fake_quant<w4_mse> wq(2);
  const variable y = wq(w);
  const quant_params p = choose_params<w4_mse>(std::span<const value_range>(exact_mse_ranges<w4_mse>(values)));
  CHECK(wq.params() == p);
  CHECK(nn::weight_fake_quant<w4_mse>::params_for(values) == p);
  CHECK(bit_identical(y.value(), fake_quantize<w4_mse>(values, p)));
  CHECK(p.scale[1] < 5.0f / 7.0f * 0.8f);  // the outlier is clipped
  // The clipped outlier gets no gradient (clipped STE), the rest does.
  autograd::backward(autograd::sum(y));
  CHECK(w.grad()(1, 3) == 0.0f);
  CHECK(w.grad()(0, 0) == 1.0f);

  nn::fake_quant<a4_mse> aq;
  static_assert(std::is_same_v<nn::fake_quant<a4_mse>::observer_type, moving_average_mse_observer<a4_mse>>);
  const array<float> x = batch(rng, 0.0, 1.0);
  (void)aq(variable(x));
  moving_average_mse_observer<a4_mse> reference;
  reference.observe(x);
  CHECK(aq.params() == reference.params());
}

// ---------------------------------------------------------------------------------------
// lsq_fake_quant
// ---------------------------------------------------------------------------------------

TEST_CASE("lsq_fake_quant: initialised from the first training batch, then learned") {
  std::mt19937 rng(7);
  nn::lsq_fake_quant<a4_lsq> fq(nn::lsq_config::activations());
  const auto params = fq.parameters();
  REQUIRE(params.size() == 1);
  CHECK(params[0].name == "scale");
  CHECK(params[0].var->requires_grad());
  REQUIRE(fq.buffers().size() == 2);
  CHECK(fq.buffers()[0].name == "zero_point");
  CHECK(fq.buffers()[1].name == "initialized");
  CHECK_FALSE(fq.initialized());

  // evaluating before initialisation is an error
  fq.eval();
  CHECK_THROWS_AS(fq(variable(batch(rng, 0.0, 2.0))), value_error);
  fq.train();

  const array<float> b1 = batch(rng, 0.0, 2.0);
  const variable y = fq(variable(b1));
  CHECK(fq.initialized());
  const array<float> s0 = nn::functional::lsq_initial_scale<a4_lsq>(b1);
  CHECK(fq.scale().value() == s0);
  CHECK(bit_identical(y.value(), fake_quantize<a4_lsq>(b1, quant_params::tensor(s0(0), 0))));
  CHECK(fq.params() == quant_params::tensor(s0(0), 0));

  // the gradient reaches the parameter, scaled with N = features per sample (3 * 5 * 5)
  autograd::backward(autograd::sum(y));
  REQUIRE(fq.scale().has_grad());
  var64 s64(array<double>(xt::cast<double>(s0)), true);
  const var64 x64(array<double>(xt::cast<double>(b1)));
  autograd::backward(autograd::sum(
      nn::functional::fake_quant_lsq<a4_lsq>(x64, s64, {.count = nn::functional::lsq_count::per_sample})));
  CHECK(fq.scale().grad()(0) == doctest::Approx(s64.grad()(0)).epsilon(1e-4));

  // a second batch does not re-initialise
  fq.scale().value()(0) = 0.3f;
  fq(variable(batch(rng, 0.0, 9.0)));
  CHECK(fq.scale().value()(0) == 0.3f);

  // the step size is clamped in place before use
  fq.scale().value()(0) = -1.0f;
  fq(variable(b1));
  CHECK(fq.scale().value()(0) == nn::functional::learned_min_scale);

  // disabled: identity; reset_parameters: initialise again from the next batch
  fq.disable();
  const variable x(b1);
  CHECK(fq(x).node_ptr() == x.node_ptr());
  fq.enable();
  std::mt19937 init_rng(0);
  fq.reset_parameters(init_rng);
  CHECK_FALSE(fq.initialized());
}

TEST_CASE("lsq_fake_quant: per-channel weights, and a checkpoint keeps the learned step size") {
  std::mt19937 rng(8);
  nn::lsq_fake_quant<w4_lsq> wq(nn::lsq_config::weights(4));
  const array<float> w = batch(rng, -0.5, 0.5, {4, 2, 3, 3});
  wq(variable(w));
  CHECK(wq.scale().value() == nn::functional::lsq_initial_scale<w4_lsq>(w));
  wq.scale().value()(2) = 0.125f;  // "learned"

  temp_file file("fake_quant");
  io::save_checkpoint(file.path, wq);
  nn::lsq_fake_quant<w4_lsq> restored(nn::lsq_config::weights(4));
  io::load_checkpoint(file.path, restored);
  CHECK(restored.initialized());
  restored.eval();  // initialised by the checkpoint: evaluating is fine and does not re-initialise
  const variable y = restored(variable(w));
  CHECK(restored.scale().value() == wq.scale().value());
  CHECK(bit_identical(y.value(), fake_quantize<w4_lsq>(w, restored.params())));

  CHECK_THROWS_AS(wq(variable(array<float>(shape_t{3, 2}, 0.1f))), shape_error);
  CHECK_THROWS_AS(nn::lsq_fake_quant<w4_lsq>(nn::lsq_config{.channels = 4, .zero_point = 1}), value_error);
  CHECK_THROWS_AS(nn::lsq_fake_quant<w4_lsq>(nn::lsq_config{.channels = 0}), value_error);
}

TEST_CASE("lsq_fake_quant: asymmetric activations with a fixed zero point") {
  std::mt19937 rng(9);
  nn::lsq_fake_quant<a4_lsq> fq(nn::lsq_config::activations(3));
  const array<float> x = batch(rng, -0.5, 2.0);
  const variable y = fq(variable(x));
  CHECK(fq.params().zero_point[0] == 3);
  CHECK(fq.scale().value() == nn::functional::lsq_initial_scale<a4_lsq>(x, 3));
  CHECK(bit_identical(y.value(), fake_quantize<a4_lsq>(x, fq.params())));
}

TEST_CASE("lsq_fake_quant: zero point and step size from the first batch's min/max") {
  std::mt19937 rng(11);
  // Negative values: the zero point splits the levels as choose_params does.
  nn::lsq_config c = nn::lsq_config::activations_from_data();
  nn::lsq_fake_quant<a4_lsq> mean_abs(c);
  const array<float> x = batch(rng, -0.5, 2.0);
  (void)mean_abs(variable(x));
  const quant_params ranged = choose_params<a4_lsq>(xt::amin(x)(), xt::amax(x)());
  CHECK(ranged.zero_point[0] > 0);
  CHECK(mean_abs.params().zero_point[0] == ranged.zero_point[0]);
  CHECK(mean_abs.scale().value() == nn::functional::lsq_initial_scale<a4_lsq>(x, ranged.zero_point[0]));
  c.init = nn::lsq_init::min_max;
  nn::lsq_fake_quant<a4_lsq> min_max(c);
  (void)min_max(variable(x));
  CHECK(min_max.params() == ranged);
  // Nothing negative (after ReLU): zero point qmin, every level for the positive side.
  nn::lsq_fake_quant<a4_lsq> relu(c);
  const array<float> r = batch(rng, 0.0, 3.0);
  (void)relu(variable(r));
  CHECK(relu.params().zero_point[0] == a4_lsq::qmin);
  // reset_parameters forgets the chosen zero point with the step size.
  std::mt19937 init_rng(0);
  min_max.reset_parameters(init_rng);
  CHECK(min_max.zero_point()(0) == 0.0f);
  // Per-channel weights from min/max: weight_fake_quant's parameters.
  nn::lsq_config wc = nn::lsq_config::weights(4);
  wc.init = nn::lsq_init::min_max;
  nn::lsq_fake_quant<w4_lsq> wq(wc);
  const array<float> w = batch(rng, -0.5, 0.5, {4, 2, 3, 3});
  (void)wq(variable(w));
  CHECK(wq.params() == nn::weight_fake_quant<w4_lsq>::params_for(w));
  // Per axis the zero point cannot come from one batch range.
  nn::lsq_config bad = nn::lsq_config::weights(4);
  bad.zero_point_from_data = true;
  CHECK_THROWS_AS(nn::lsq_fake_quant<w4_lsq>{bad}, value_error);
}

TEST_CASE("lsq_fake_quant: freeze stops the step size learning, the input gradient stays") {
  std::mt19937 rng(12);
  nn::lsq_fake_quant<a4_lsq> fq(nn::lsq_config::activations());
  const array<float> x = batch(rng, 0.0, 2.0);
  autograd::backward(autograd::sum(fq(variable(x))));
  REQUIRE(fq.scale().has_grad());
  fq.freeze();
  CHECK(fq.frozen());
  CHECK_FALSE(fq.scale().has_grad());  // dropped: an optimizer skips the parameter
  variable v(x, true);
  const variable y = fq(v);
  CHECK(bit_identical(y.value(), fake_quantize<a4_lsq>(x, fq.params())));
  autograd::backward(autograd::sum(y));
  CHECK_FALSE(fq.scale().has_grad());
  CHECK(v.has_grad());
  fq.unfreeze();
  autograd::backward(autograd::sum(fq(variable(x))));
  CHECK(fq.scale().has_grad());
}

// ---------------------------------------------------------------------------------------
// pact_fake_quant
// ---------------------------------------------------------------------------------------

TEST_CASE("pact_fake_quant: alpha from the first batch or given, learned by backward") {
  std::mt19937 rng(10);
  nn::pact_fake_quant<a4> fq;
  REQUIRE(fq.parameters().size() == 1);
  CHECK(fq.parameters()[0].name == "alpha");
  CHECK(fq.buffers()[0].name == "initialized");
  const array<float> x = batch(rng, -1.0, 3.0);
  const variable y = fq(variable(x));
  CHECK(fq.initialized());
  CHECK(fq.alpha().value()(0) == xt::amax(x)());
  CHECK(bit_identical(y.value(), fake_quantize<a4>(x, fq.params())));

  nn::pact_fake_quant<a4> given({.initial_alpha = 1.5f});
  CHECK(given.initialized());
  given.eval();  // usable at once
  const variable x2(x, true);
  const variable y2 = given(x2);
  CHECK(given.params() == quant_params::tensor(1.5f / 15, 0));
  autograd::backward(autograd::sum(y2));
  double expected = 0;
  for (float v : x) expected += v >= 1.5f ? 1.0 : 0.0;
  CHECK(given.alpha().grad()(0) == float(expected));

  nn::pact_fake_quant<a4> fresh;
  fresh.eval();
  CHECK_THROWS_AS(fresh(variable(x)), value_error);
  CHECK_THROWS_AS(nn::pact_fake_quant<a4>({.initial_alpha = -1.0f}), value_error);
}
