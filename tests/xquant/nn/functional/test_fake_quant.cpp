#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "../nn_test_util.hpp"
#include "xquant/nn/functional/fake_quant.hpp"
#include "xquant/quant/choose_params.hpp"
#include "xquant/quant/quantize.hpp"

using namespace xquant;
using namespace xquant::nn::functional;
using namespace nn_test;

namespace {

using var32 = autograd::variable;

constexpr float inf = std::numeric_limits<float>::infinity();

/// Runs backward from y with seed dy and returns the gradients of the inputs.
template <class T>
void backward_with(const autograd::basic_variable<T>& y, const array<T>& dy) {
  autograd::backward(y, &dy);
}

/// dy = 1, 2, 3, ...: every element distinct, so a mask error cannot hide in a sum.
template <class T>
array<T> counting_seed(const shape_t& shape) {
  array<T> dy(shape);
  for (std::size_t i = 0; i < dy.size(); ++i) dy.data()[i] = static_cast<T>(i + 1);
  return dy;
}

/// Random data over [lo, hi] with a fifth of the values on exact rounding ties
/// (odd multiples of scale/2) of channel c's scale, and a few values far outside.
array<float> tie_rich_data(const shape_t& shape, const quant_params& p, std::mt19937& rng) {
  const axis_layout l = axis_layout::of(shape, p.axis);
  array<float> x(shape);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::uniform_int_distribution<int> k(-300, 300);
  std::uniform_int_distribution<int> pick(0, 9);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t c = (i / l.inner) % l.channels;
    const int which = pick(rng);
    if (which < 2) {
      x.data()[i] = (static_cast<float>(k(rng)) + 0.5f) * p.scale[c];  // a tie (when exact in float)
    } else if (which == 2) {
      x.data()[i] = u(rng) * 100.0f;  // far outside
    } else {
      x.data()[i] = u(rng);
    }
  }
  return x;
}

/// Parameters for `channels` channels from ranges narrower than the data, so the clamp acts.
template <quant_scheme Scheme>
quant_params narrow_params(std::size_t channels, std::mt19937& rng) {
  std::uniform_real_distribution<float> lo(-2.0f, -0.1f), hi(0.1f, 2.0f);
  std::vector<value_range> ranges;
  for (std::size_t c = 0; c < channels; ++c) ranges.push_back({lo(rng), hi(rng)});
  if constexpr (Scheme::is_per_axis) {
    return choose_params<Scheme>(std::span<const value_range>(ranges));
  } else {
    return choose_params<Scheme>(ranges[0].min, ranges[0].max);
  }
}

using s8_sym_t = scheme<narrow_bits<8>, symmetric>;
using u8_asym_t = scheme<unsigned_bits<8>, asymmetric>;
using s4_sym_a0 = scheme<narrow_bits<4>, symmetric, per_axis<0>>;
using u4_asym_a1 = scheme<unsigned_bits<4>, asymmetric, per_axis<1>>;
using s8_asym_a1 = scheme<signed_bits<8>, asymmetric, per_axis<1>>;
using u8_asym_a0 = scheme<unsigned_bits<8>, asymmetric, per_axis<0>>;
using s4_sym_t_away = scheme<signed_bits<4>, symmetric, round_half_away>;

}  // namespace

// ---------------------------------------------------------------------------------------
// forward
// ---------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("fake_quant forward equals quant::fake_quantize bit for bit (float)", Scheme, s8_sym_t,
                   u8_asym_t, s4_sym_a0, u4_asym_a1, s8_asym_a1, u8_asym_a0, s4_sym_t_away) {
  std::mt19937 rng(11);
  const shape_t shape{5, 7, 3, 2};
  const std::size_t channels = Scheme::is_per_axis ? shape[Scheme::axis] : 1;
  for (int trial = 0; trial < 4; ++trial) {
    const quant_params p = narrow_params<Scheme>(channels, rng);
    array<float> x = tie_rich_data(shape, p, rng);
    x.data()[0] = inf;  // saturates to qmax
    x.data()[1] = -inf;
    x.data()[2] = -0.0f;
    const array<float> expected = fake_quantize<Scheme>(x, p);
    const array<float> y = fake_quant<Scheme>(var32(x), p).value();
    CHECK(bit_identical(y, expected));
  }
}

TEST_CASE("fake_quant forward in double: the same formula, one step apart at most where float rounds differently") {
  std::mt19937 rng(12);
  const quant_params p = narrow_params<u4_asym_a1>(7, rng);
  const array<float> x = random_array<float>(shape_t{64, 7, 5}, rng, -3.0, 3.0);
  const array<float> y32 = fake_quant<u4_asym_a1>(var32(x), p).value();
  const array<double> y64 = fake_quant<u4_asym_a1>(var64(array<double>(xt::cast<double>(x))), p).value();
  std::size_t differ = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double s = p.scale[(i / 5) % 7];
    const double d = std::abs(double(y32.data()[i]) - y64.data()[i]);
    const bool same_level = d <= 1e-6 * s;  // float vs double rounding of q * s
    const bool next_level = std::abs(d - s) <= 1e-6 * s;
    CHECK((same_level || next_level));
    differ += next_level;
  }
  CHECK(differ <= x.size() / 1000);  // random data: rounding-boundary cases are rare
}

TEST_CASE("fake_quant forward and backward are bit-identical on one and two threads") {
  std::mt19937 rng(13);
  const quant_params p = narrow_params<s8_asym_a1>(3, rng);
  const array<float> x = random_array<float>(shape_t{8, 3, 64, 64}, rng, -3.0, 3.0);  // > 2 grains
  const array<float> dy = random_array<float>(shape_t{8, 3, 64, 64}, rng);
  auto run = [&] {
    var32 v(x, true);
    backward_with(fake_quant<s8_asym_a1>(v, p), dy);
    return std::pair{fake_quant<s8_asym_a1>(var32(x), p).value(), array<float>(v.grad())};
  };
  const auto [y1, g1] = run();
  threads_guard threads(2);
  const auto [y2, g2] = run();
  CHECK(bit_identical(y1, y2));
  CHECK(bit_identical(g1, g2));
  CHECK(bit_identical(y1, fake_quantize<s8_asym_a1>(x, p)));
}

// ---------------------------------------------------------------------------------------
// estimator masks on hand-made inputs
// ---------------------------------------------------------------------------------------

namespace {

// uint4, scale 0.5, zero point 3: integers [0, 15], q - z in [-3, 12], real range [-1.5, 6.0].
template <class Estimator, class Rounding = round_half_even>
using u4 = scheme<unsigned_bits<4>, asymmetric, Estimator, Rounding>;
const quant_params u4_params = quant_params::tensor(0.5f, 3);

// x / s:                  -inf  -200  -3.5   -3.48  -3    0     11.9  12    12.48  12.5   12.52  13.5   200   inf
const array<float> mask_x{-inf, -100, -1.75f, -1.74f, -1.5f, 0.0f, 5.95f, 6.0f, 6.24f, 6.25f, 6.26f, 6.75f, 100, inf};

template <class Scheme>
array<float> input_grad_of(const array<float>& x, const quant_params& p) {
  var32 v(x, true);
  backward_with(fake_quant<Scheme>(v, p), counting_seed<float>(shape_of(x)));
  return v.grad();
}

/// counting_seed masked: mask[i] ? i + 1 : 0.
array<float> masked_seed(const std::vector<int>& mask) {
  array<float> g(shape_t{mask.size()});
  for (std::size_t i = 0; i < mask.size(); ++i) g(i) = mask[i] ? float(i + 1) : 0.0f;
  return g;
}

}  // namespace

TEST_CASE("ste: the gradient passes everywhere, also at +-Inf") {
  CHECK(input_grad_of<u4<ste>>(mask_x, u4_params) == counting_seed<float>(shape_of(mask_x)));
}

TEST_CASE("clipped_ste: the gradient passes where the rounded integer is in (qmin, qmax) (PyTorch's mask)") {
  // Inside: round(x/s) in [-3, 12]. Ties round half to even: -3.5 -> -4 (out), 12.5 -> 12 (in).
  const std::vector<int> half_even{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
  CHECK(input_grad_of<u4<clipped_ste>>(mask_x, u4_params) == masked_seed(half_even));
  // The fixed-parameter lsq estimator uses the same input mask.
  CHECK(input_grad_of<u4<lsq>>(mask_x, u4_params) == masked_seed(half_even));
  // The mask follows the scheme's rounding: half away from zero sends 12.5 -> 13 (out).
  const std::vector<int> half_away{0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
  CHECK(input_grad_of<u4<clipped_ste, round_half_away>>(mask_x, u4_params) == masked_seed(half_away));
}

TEST_CASE("clipped_ste: inside the mask exactly where the clamp did not change the value") {
  // y == round(x / s) * s  <=>  gradient passes (for finite x).
  const array<float> y = fake_quant<u4<clipped_ste>>(var32(mask_x), u4_params).value();
  const array<float> g = input_grad_of<u4<clipped_ste>>(mask_x, u4_params);
  for (std::size_t i = 1; i + 1 < mask_x.size(); ++i) {
    const float unclamped = std::nearbyint(mask_x(i) / 0.5f) * 0.5f;
    CHECK_MESSAGE((y(i) == unclamped) == (g(i) != 0.0f), "element ", i);
  }
}

TEST_CASE("fake_quant gradients accumulate and flow only into inputs that require them") {
  var32 x(array<float>{0.1f, 100.0f}, true);
  const var32 y = autograd::add(fake_quant<u4<clipped_ste>>(x, u4_params), fake_quant<u4<ste>>(x, u4_params));
  backward_with(y, array<float>{1.0f, 1.0f});
  CHECK(x.grad() == array<float>{2.0f, 1.0f});
  const var32 constant(array<float>{0.1f});
  CHECK_FALSE(fake_quant<u4<ste>>(constant, u4_params).requires_grad());
}

// ---------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------

TEST_CASE("fake_quant errors: NaN, wrong number of scales for the axis, invalid parameters") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(fake_quant<u8_asym_t>(var32(array<float>{1.0f, nan}), quant_params::tensor(0.1f, 0)), numeric_error);
  CHECK_THROWS_WITH_AS(fake_quant<u8_asym_t>(var32(array<float>{1.0f, 2.0f, nan}), quant_params::tensor(0.1f, 0)),
                       doctest::Contains("NaN at flat index 2"), numeric_error);
  CHECK_THROWS_AS(fake_quant<u8_asym_t>(var64(array<double>{std::nan("")}), quant_params::tensor(0.1f, 0)),
                  numeric_error);

  const array<float> x(shape_t{2, 3, 4}, 0.5f);
  // per_axis<1> with 3 channels needs 3 scales
  CHECK_THROWS_AS(fake_quant<u4_asym_a1>(var32(x), quant_params::along(1, {0.1f, 0.1f}, {0, 0})), shape_error);
  CHECK_NOTHROW(fake_quant<u4_asym_a1>(var32(x), quant_params::along(1, {0.1f, 0.1f, 0.1f}, {0, 0, 0})));
  // the axis must be the scheme's
  CHECK_THROWS_AS(fake_quant<u4_asym_a1>(var32(x), quant_params::along(0, {0.1f, 0.1f}, {0, 0})), value_error);
  // a per_axis scheme on a tensor without that axis
  CHECK_THROWS_AS(fake_quant<u4_asym_a1>(var32(array<float>{1.0f}), quant_params::along(1, {0.1f}, {0})), shape_error);
  // per_tensor with two scales, scale 0, zero point outside the range, symmetric with a zero point
  CHECK_THROWS_AS(fake_quant<u8_asym_t>(var32(x), quant_params::along(0, {0.1f, 0.1f}, {0, 0})), value_error);
  CHECK_THROWS_AS(fake_quant<u8_asym_t>(var32(x), quant_params::tensor(0.0f, 0)), value_error);
  CHECK_THROWS_AS(fake_quant<u8_asym_t>(var32(x), quant_params::tensor(0.1f, 256)), value_error);
  CHECK_THROWS_AS(fake_quant<s8_sym_t>(var32(x), quant_params::tensor(0.1f, 1)), value_error);
}

// ---------------------------------------------------------------------------------------
// LSQ
// ---------------------------------------------------------------------------------------

namespace {

using lsq_w = scheme<narrow_bits<4>, symmetric, per_axis<0>, lsq>;  // Q_N = Q_P = 7
using lsq_a = scheme<unsigned_bits<4>, asymmetric, lsq>;            // Q_N = 0, Q_P = 15 (zero point 0)
using lsq_s8 = scheme<signed_bits<8>, symmetric, lsq>;              // Q_N = 128, Q_P = 127

/// The paper's eq. 3 with the rounded inside test, in double, independent of the op: the
/// sum over channel c of dy * d v_hat / d s, and the input mask.
template <quant_scheme Scheme>
std::vector<double> lsq_reference_ds(const array<double>& x, const array<double>& dy, const std::vector<double>& s,
                                     std::int32_t z, int axis, array<double>* dx) {
  const axis_layout l = axis_layout::of(shape_of(x), axis);
  std::vector<double> ds(l.channels, 0.0);
  const double qn = Scheme::qmin - z, qp = Scheme::qmax - z;  // -Q_N, Q_P
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t c = (i / l.inner) % l.channels;
    const double u = x.data()[i] / s[c];
    const double r = std::nearbyint(u);
    const bool inside = r >= qn && r <= qp;
    ds[c] += dy.data()[i] * (inside ? r - u : (r < qn ? qn : qp));
    if (dx) dx->data()[i] = inside ? dy.data()[i] : 0.0;
  }
  return ds;
}

/// x / s at least `margin` away from every rounding boundary (half-integer), so that no
/// element changes its integer when s moves by a relative 1e-7.
array<double> away_from_ties(const shape_t& shape, double s, double lo, double hi, std::mt19937& rng,
                             double margin = 0.05) {
  array<double> x(shape);
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& v : x) {
    double q;
    do {
      q = u(rng);
    } while (std::abs(q - std::floor(q) - 0.5) < margin);
    v = q * s;
  }
  return x;
}

}  // namespace

TEST_CASE("lsq forward equals fake_quantize with the same step size, bit for bit") {
  std::mt19937 rng(21);
  const array<float> w = random_array<float>(shape_t{4, 3, 3, 3}, rng, -1.0, 1.0);
  const var32 s(array<float>{0.05f, 0.11f, 0.2f, 0.013f});
  const quant_params p = quant_params::along(0, {0.05f, 0.11f, 0.2f, 0.013f}, {0, 0, 0, 0});
  CHECK(bit_identical(fake_quant_lsq<lsq_w>(var32(w), s).value(), fake_quantize<lsq_w>(w, p)));

  const array<float> a = random_array<float>(shape_t{2, 3, 5}, rng, -0.5, 3.0);
  CHECK(bit_identical(fake_quant_lsq<lsq_a>(var32(a), var32(array<float>{0.1f})).value(),
                      fake_quantize<lsq_a>(a, quant_params::tensor(0.1f, 0))));
  // with a fixed nonzero zero point
  CHECK(bit_identical(fake_quant_lsq<lsq_a>(var32(a), var32(array<float>{0.1f}), {.zero_point = {4}}).value(),
                      fake_quantize<lsq_a>(a, quant_params::tensor(0.1f, 4))));
}

TEST_CASE("lsq gradients match eq. 3 on hand-made inputs") {
  // int4 narrow symmetric, s = 0.5: inside <=> round(x / s) in [-7, 7].
  //   x/s:      -10     -7.6   -7.4   -3.2   0     2.5    7.4   7.5    9
  const array<double> x{-5.0, -3.8, -3.7, -1.6, 0.0, 1.25, 3.7, 3.75, 4.5};
  using one_scale = scheme<narrow_bits<4>, symmetric, lsq>;
  var64 xv(x, true);
  var64 s(array<double>{0.5}, true);
  backward_with(fake_quant_lsq<one_scale>(xv, s, {.grad_scale = 1.0}), array<double>(shape_t{9}, 1.0));
  // d v_hat / d s: -Q_N = -7 | round(u) - u inside | Q_P = 7. 7.5 rounds to 8: outside.
  const std::vector<double> per_element{-7, -7, -7.0 + 7.4, -3.0 + 3.2, 0, 2.0 - 2.5, 7.0 - 7.4, 7, 7};
  double expected = 0;
  for (double d : per_element) expected += d;
  CHECK(s.grad()(0) == doctest::Approx(expected).epsilon(1e-12));
  CHECK(xv.grad() == array<double>{0, 0, 1, 1, 1, 1, 1, 0, 0});
}

TEST_CASE("lsq gradients equal an independent eq. 3 on random data (per axis, asymmetric with a zero point)") {
  std::mt19937 rng(22);
  {
    const array<double> w = random_array<double>(shape_t{4, 2, 3, 3}, rng, -1.0, 1.0);
    const array<double> dy = random_array<double>(shape_t{4, 2, 3, 3}, rng);
    const std::vector<double> sv{0.05, 0.11, 0.2, 0.013};
    var64 x(w, true);
    var64 s(array<double>{0.05, 0.11, 0.2, 0.013}, true);
    backward_with(fake_quant_lsq<lsq_w>(x, s, {.grad_scale = 1.0}), dy);
    array<double> dx_ref(shape_of(w));
    const std::vector<double> ds_ref = lsq_reference_ds<lsq_w>(w, dy, sv, 0, 0, &dx_ref);
    for (std::size_t c = 0; c < 4; ++c) CHECK(s.grad()(c) == doctest::Approx(ds_ref[c]).epsilon(1e-12));
    CHECK(x.grad() == dx_ref);
  }
  {
    const array<double> a = random_array<double>(shape_t{3, 4, 5}, rng, -1.0, 2.0);
    const array<double> dy = random_array<double>(shape_t{3, 4, 5}, rng);
    var64 x(a, true);
    var64 s(array<double>{0.07}, true);
    backward_with(fake_quant_lsq<lsq_a>(x, s, {.zero_point = {5}, .grad_scale = 1.0}), dy);
    array<double> dx_ref(shape_of(a));
    const std::vector<double> ds_ref = lsq_reference_ds<lsq_a>(a, dy, {0.07}, 5, -1, &dx_ref);
    CHECK(s.grad()(0) == doctest::Approx(ds_ref[0]).epsilon(1e-12));
    CHECK(x.grad() == dx_ref);
  }
}

TEST_CASE("lsq scale gradient: finite differences of the forward verify its step-function part") {
  // Where no element crosses a rounding boundary within s +- eps, v_hat(s) = q * s with q
  // the fixed clamped integer, so d v_hat / d s = q exactly: round(v/s) inside, -Q_N or Q_P
  // outside. That is eq. 3 minus its STE term -v/s (which is inside only). So
  //   FD(sum r * v_hat)  ==  analytic(grad_scale 1) + sum_inside r * v / s.
  // The -v/s term itself is checked against the formula in the tests above.
  std::mt19937 rng(23);
  for (int trial = 0; trial < 5; ++trial) {
    const double s0 = 0.03 + 0.01 * trial;
    const array<double> x = away_from_ties(shape_t{6, 7}, s0, -200.0, 200.0, rng);  // a third outside [-128, 127]
    const array<double> r = random_array<double>(shape_t{6, 7}, rng);
    var64 xv(x);
    var64 s(array<double>{s0}, true);
    backward_with(fake_quant_lsq<lsq_s8>(xv, s, {.grad_scale = 1.0}), r);
    const double analytic = s.grad()(0);

    auto loss = [&](double sv) {
      const array<double> y = fake_quant_lsq<lsq_s8>(var64(x), var64(array<double>{sv})).value();
      double l = 0;
      for (std::size_t i = 0; i < y.size(); ++i) l += r.data()[i] * y.data()[i];
      return l;
    };
    const double eps = s0 * 1e-7;
    const double fd = (loss(s0 + eps) - loss(s0 - eps)) / (2 * eps);
    double ste_term = 0;
    std::size_t inside = 0, outside = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double q = std::nearbyint(x.data()[i] / s0);
      if (q >= -128 && q <= 127) {
        ste_term += r.data()[i] * x.data()[i] / s0;
        ++inside;
      } else {
        ++outside;
      }
    }
    REQUIRE(inside > 0);
    REQUIRE(outside > 0);
    CHECK(fd == doctest::Approx(analytic + ste_term).epsilon(1e-6));
  }
}

TEST_CASE("lsq gradient scale g = 1 / sqrt(N * Q_P)") {
  std::mt19937 rng(24);
  CHECK(lsq_positive_levels<lsq_w>() == 7);
  CHECK(lsq_positive_levels<lsq_a>() == 15);
  CHECK(lsq_positive_levels<lsq_a>(5) == 10);
  CHECK(lsq_positive_levels<lsq_a>(15) == 15);  // no level above z: z - qmin
  CHECK(lsq_positive_levels<lsq_s8>() == 127);
  CHECK(lsq_gradient_scale(100, 4) == 0.05);
  CHECK_THROWS_AS(lsq_gradient_scale(0, 4), value_error);

  // ratio of the default gradient to the unscaled one, for each way of counting N
  auto ratio = [&]<quant_scheme Scheme>(const shape_t& shape, const array<double>& scale, lsq_options options) {
    const array<double> x = random_array<double>(shape, rng, -1.0, 1.0);
    var64 s1(scale, true), s2(scale, true);
    backward_with(fake_quant_lsq<Scheme>(var64(x), s1, options), array<double>(shape, 1.0));
    options.grad_scale = 1.0;
    backward_with(fake_quant_lsq<Scheme>(var64(x), s2, options), array<double>(shape, 1.0));
    REQUIRE(s2.grad()(0) != 0.0);
    return s1.grad()(0) / s2.grad()(0);
  };
  // weights per axis<0> [4, 2, 3, 3]: N = 18 per channel, Q_P = 7
  CHECK(ratio.operator()<lsq_w>(shape_t{4, 2, 3, 3}, array<double>{0.1, 0.1, 0.1, 0.1}, {}) ==
        doctest::Approx(1 / std::sqrt(18.0 * 7)));
  // per tensor [8, 3, 5]: N = 120 (per_scale) or 15 features per sample (per_sample), Q_P = 15
  CHECK(ratio.operator()<lsq_a>(shape_t{8, 3, 5}, array<double>{0.1}, {}) ==
        doctest::Approx(1 / std::sqrt(120.0 * 15)));
  CHECK(ratio.operator()<lsq_a>(shape_t{8, 3, 5}, array<double>{0.1}, {.count = lsq_count::per_sample}) ==
        doctest::Approx(1 / std::sqrt(15.0 * 15)));
  // with zero point 5: Q_P = 10
  CHECK(ratio.operator()<lsq_a>(shape_t{8, 3, 5}, array<double>{0.1}, {.zero_point = {5}}) ==
        doctest::Approx(1 / std::sqrt(120.0 * 10)));
  // an explicit grad_scale replaces g
  CHECK(ratio.operator()<lsq_a>(shape_t{8, 3, 5}, array<double>{0.1}, {.grad_scale = 0.25}) == doctest::Approx(0.25));
  // per_sample makes no sense when axis 0 is the channel axis
  CHECK_THROWS_AS(fake_quant_lsq<lsq_w>(var64(array<double>(shape_t{2, 3}, 0.1)), var64(array<double>{0.1, 0.1}),
                                        {.count = lsq_count::per_sample}),
                  value_error);
}

TEST_CASE("lsq step size: floored in the forward, straight-through in the backward") {
  using one = scheme<narrow_bits<8>, symmetric, lsq>;
  const array<float> x{1e-9f, -2e-6f, 0.5f};
  for (float bad : {0.0f, -0.5f, 1e-12f}) {
    var32 s(array<float>{bad}, true);
    const var32 y = fake_quant_lsq<one>(var32(x), s, {.grad_scale = 1.0});
    CHECK(bit_identical(y.value(), fake_quantize<one>(x, quant_params::tensor(learned_min_scale, 0))));
    backward_with(y, array<float>{1.0f, 1.0f, 1.0f});
    REQUIRE(s.has_grad());
    CHECK(s.grad()(0) != 0.0f);  // the optimizer can push it back up
  }
}

TEST_CASE("lsq errors: NaN input, non-finite or wrongly shaped step size, bad zero points") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const var32 s(array<float>{0.1f});
  CHECK_THROWS_AS(fake_quant_lsq<lsq_a>(var32(array<float>{0.5f, nan}), s), numeric_error);
  CHECK_THROWS_AS(fake_quant_lsq<lsq_a>(var32(array<float>{0.5f}), var32(array<float>{nan})), numeric_error);
  CHECK_THROWS_AS(fake_quant_lsq<lsq_a>(var32(array<float>{0.5f}), var32(array<float>{inf})), numeric_error);
  // one step size per channel of axis 0
  const var32 w(array<float>(shape_t{3, 4}, 0.1f));
  CHECK_THROWS_AS(fake_quant_lsq<lsq_w>(w, var32(array<float>{0.1f, 0.1f})), shape_error);
  CHECK_THROWS_AS(fake_quant_lsq<lsq_w>(w, var32(array<float>(shape_t{3, 1}, 0.1f))), shape_error);
  CHECK_NOTHROW(fake_quant_lsq<lsq_w>(w, var32(array<float>{0.1f, 0.1f, 0.1f})));
  CHECK_THROWS_AS(fake_quant_lsq<lsq_a>(var32(array<float>{0.5f}), var32(array<float>{0.1f, 0.1f})), shape_error);
  // zero points: count, range, symmetric
  CHECK_THROWS_AS(fake_quant_lsq<lsq_a>(var32(array<float>{0.5f}), s, {.zero_point = {1, 2}}), shape_error);
  CHECK_THROWS_AS(fake_quant_lsq<lsq_a>(var32(array<float>{0.5f}), s, {.zero_point = {16}}), value_error);
  CHECK_THROWS_AS(fake_quant_lsq<lsq_w>(w, var32(array<float>{0.1f, 0.1f, 0.1f}), {.zero_point = {0, 1, 0}}),
                  value_error);
  CHECK_THROWS_AS(fake_quant_lsq<lsq_a>(var32(array<float>{0.5f}), s, {.grad_scale = -1.0}), value_error);
}

TEST_CASE("lsq_initial_scale: 2 mean(|x|) / sqrt(Q_P) per channel") {
  const array<float> w{{1.0f, -3.0f}, {0.0f, 0.0f}, {-0.5f, 0.5f}};
  const array<float> s = lsq_initial_scale<lsq_w>(w);  // Q_P = 7
  REQUIRE((s.dimension() == 1 && s.size() == 3));
  CHECK(s(0) == doctest::Approx(2 * 2.0 / std::sqrt(7.0)));
  CHECK(s(1) == 1.0f);  // all zeros
  CHECK(s(2) == doctest::Approx(2 * 0.5 / std::sqrt(7.0)));
  const array<float> t = lsq_initial_scale<lsq_a>(w);  // per tensor, Q_P = 15
  REQUIRE(t.size() == 1);
  CHECK(t(0) == doctest::Approx(2 * (5.0 / 6) / std::sqrt(15.0)));
  CHECK(lsq_initial_scale<lsq_a>(w, 5)(0) == doctest::Approx(2 * (5.0 / 6) / std::sqrt(10.0)));
  CHECK_THROWS_AS(lsq_initial_scale<lsq_a>(array<float>(shape_t{0})), value_error);
  CHECK_THROWS_AS(lsq_initial_scale<lsq_a>(array<float>{1.0f, std::nanf("")}), numeric_error);
}

TEST_CASE("lsq scale gradient is bit-identical on one and two threads") {
  std::mt19937 rng(25);
  const array<float> x = random_array<float>(shape_t{4, 3, 100, 100}, rng, -1.0, 1.0);
  const array<float> dy = random_array<float>(shape_t{4, 3, 100, 100}, rng);
  using a1 = scheme<narrow_bits<8>, symmetric, per_axis<1>, lsq>;
  auto run = [&] {
    var32 xv(x, true);
    var32 s(array<float>{0.01f, 0.02f, 0.005f}, true);
    backward_with(fake_quant_lsq<a1>(xv, s), dy);
    return std::pair{array<float>(s.grad()), array<float>(xv.grad())};
  };
  const auto [s1, x1] = run();
  threads_guard threads(2);
  const auto [s2, x2] = run();
  CHECK(bit_identical(s1, s2));
  CHECK(bit_identical(x1, x2));
}

// ---------------------------------------------------------------------------------------
// PACT
// ---------------------------------------------------------------------------------------

namespace {
using pact4 = scheme<unsigned_bits<4>, asymmetric>;  // qmax = 15
using pact8_a1 = scheme<unsigned_bits<8>, asymmetric, per_axis<1>>;
}  // namespace

TEST_CASE("pact forward equals fake_quantize with scale alpha / qmax, bit for bit") {
  std::mt19937 rng(31);
  const array<float> x = random_array<float>(shape_t{3, 4, 5, 5}, rng, -2.0, 8.0);
  for (float a : {6.0f, 1.3f, 0.37f}) {
    const array<float> y = fake_quant_pact<pact4>(var32(x), var32(array<float>{a})).value();
    CHECK(bit_identical(y, fake_quantize<pact4>(x, quant_params::tensor(a / 15.0f, 0))));
  }
  const array<float> alphas{2.0f, 5.5f, 0.7f, 3.0f};
  const array<float> y = fake_quant_pact<pact8_a1>(var32(x), var32(alphas)).value();
  const quant_params p = quant_params::along(1, {2.0f / 255, 5.5f / 255, 0.7f / 255, 3.0f / 255}, {0, 0, 0, 0});
  CHECK(bit_identical(y, fake_quantize<pact8_a1>(x, p)));
}

TEST_CASE("pact gradients on hand-made inputs: STE on (0, alpha), alpha gradient on (alpha, inf)") {
  const array<float> x{-inf, -1.0f, 0.0f, 0.1f, 2.99f, 3.0f, 3.01f, 50.0f, inf};
  var32 xv(x, true);
  var32 a(array<float>{3.0f}, true);
  backward_with(fake_quant_pact<pact4>(xv, a), counting_seed<float>(shape_t{9}));
  CHECK(xv.grad() == array<float>{0, 0, 3, 4, 5, 0, 0, 0, 0});
  CHECK(a.grad()(0) == 6.0f + 7.0f + 8.0f + 9.0f);
}

TEST_CASE("pact alpha gradient: finite differences where the function is smooth in alpha") {
  std::mt19937 rng(32);
  const double alpha = 2.0, eps = 1e-7;
  auto loss = [](const array<double>& x, const array<double>& r, double a) {
    const array<double> y = fake_quant_pact<pact4>(var64(x), var64(array<double>{a})).value();
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += r.data()[i] * y.data()[i];
    return l;
  };
  // Clipped or negative elements only: y = alpha or 0, so the FD is exact and equals PACT's gradient.
  array<double> x = random_array<double>(shape_t{40}, rng, 2.1, 5.0);
  for (std::size_t i = 0; i < 10; ++i) x(i) = -x(i);
  const array<double> r = random_array<double>(shape_t{40}, rng);
  var64 av(array<double>{alpha}, true);
  backward_with(fake_quant_pact<pact4>(var64(x), av), r);
  const double fd = (loss(x, r, alpha + eps) - loss(x, r, alpha - eps)) / (2 * eps);
  CHECK(fd == doctest::Approx(av.grad()(0)).epsilon(1e-6));

  // Elements inside (0, alpha) too, away from rounding boundaries: the forward moves by
  // round(x/s) / qmax per unit of alpha there, which PACT deliberately leaves out. So
  //   FD == analytic + sum_inside r * round(x / s) / qmax.
  const array<double> inner = away_from_ties(shape_t{30}, alpha / 15, 0.2, 14.5, rng);
  array<double> mixed(shape_t{70});
  std::copy(x.begin(), x.end(), mixed.begin());
  std::copy(inner.begin(), inner.end(), mixed.begin() + 40);
  const array<double> r2 = random_array<double>(shape_t{70}, rng);
  var64 av2(array<double>{alpha}, true);
  backward_with(fake_quant_pact<pact4>(var64(mixed), av2), r2);
  double ignored = 0;
  for (std::size_t i = 40; i < 70; ++i) ignored += r2(i) * std::nearbyint(mixed(i) / (alpha / 15)) / 15;
  const double fd2 = (loss(mixed, r2, alpha + eps) - loss(mixed, r2, alpha - eps)) / (2 * eps);
  CHECK(fd2 == doctest::Approx(av2.grad()(0) + ignored).epsilon(1e-6));
}

TEST_CASE("pact per axis, floored alpha and errors") {
  // per axis: each channel has its own alpha and its own alpha gradient
  array<float> x{5.0f, 0.5f, -1.0f, 2.0f};
  x.reshape({2, 2, 1});  // channels along axis 1: channel 0 = {5, -1}, channel 1 = {0.5, 2}
  var32 a(array<float>{1.0f, 1.5f}, true);
  var32 xv(x, true);
  using pact_a1 = scheme<unsigned_bits<4>, asymmetric, per_axis<1>>;
  backward_with(fake_quant_pact<pact_a1>(xv, a), counting_seed<float>(shape_t{2, 2, 1}));
  CHECK(a.grad() == array<float>{1.0f, 4.0f});  // channel 0: x = 5 (dy 1); channel 1: x = 2 (dy 4)
  array<float> dx{0.0f, 2.0f, 0.0f, 0.0f};
  dx.reshape({2, 2, 1});
  CHECK(xv.grad() == dx);

  // alpha <= 0 is floored at qmax * learned_min_scale; gradient passes straight through
  var32 neg(array<float>{-1.0f}, true);
  const var32 y = fake_quant_pact<pact4>(var32(array<float>{1.0f, -1.0f}), neg);
  CHECK(y.value()(0) == doctest::Approx(15 * learned_min_scale));
  autograd::backward(autograd::sum(y));
  CHECK(neg.grad()(0) == 1.0f);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(fake_quant_pact<pact4>(var32(array<float>{nan}), var32(array<float>{1.0f})), numeric_error);
  CHECK_THROWS_AS(fake_quant_pact<pact4>(var32(array<float>{1.0f}), var32(array<float>{nan})), numeric_error);
  CHECK_THROWS_AS(fake_quant_pact<pact_a1>(xv, var32(array<float>{1.0f})), shape_error);
}

TEST_CASE_TEMPLATE("fake_quant float backward: the SIMD pass's bit mask equals round(x / s) lies within qmin - z .. qmax - z", Scheme,
                   s8_sym_t, u8_asym_t, s4_sym_a0, u4_asym_a1, s8_asym_a1) {
  // Odd extents: per-axis runs start at every offset within a mask byte.
  std::mt19937 rng(21);
  const shape_t shape{5, 7, 3, 11};
  const std::size_t channels = Scheme::is_per_axis ? shape[Scheme::axis] : 1;
  const quant_params p = narrow_params<Scheme>(channels, rng);
  const array<float> x = tie_rich_data(shape, p, rng);
  const axis_layout l = axis_layout::of(shape, p.axis);
  var32 v(x, true);
  backward_with(fake_quant<Scheme>(v, p), counting_seed<float>(shape));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t c = (i / l.inner) % l.channels;
    const float r = std::nearbyint(x.data()[i] / p.scale[c]) + static_cast<float>(p.zero_point[c]);
    const bool inside = r >= Scheme::qmin && r <= Scheme::qmax;
    REQUIRE_MESSAGE(v.grad().data()[i] == (inside ? static_cast<float>(i + 1) : 0.0f), "element ", i);
  }
}
