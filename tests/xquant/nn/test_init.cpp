#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "nn_test_util.hpp"
#include "xquant/nn/init.hpp"

using namespace xquant;
using namespace nn_test;

namespace {
void mean_std(const array<float>& a, double& mean, double& std) {
  double s = 0, s2 = 0;
  for (float v : a) s += v;
  mean = s / double(a.size());
  for (float v : a) s2 += (v - mean) * (v - mean);
  std = std::sqrt(s2 / double(a.size()));
}
}  // namespace

TEST_CASE("fans of conv and linear weights") {
  const nn::init::fans conv = nn::init::compute_fans(shape_t{16, 8, 3, 3});
  CHECK(conv.in == 72);
  CHECK(conv.out == 144);
  const nn::init::fans fc = nn::init::compute_fans(shape_t{10, 128});
  CHECK(fc.in == 128);
  CHECK(fc.out == 10);
  CHECK_THROWS_AS(nn::init::compute_fans(shape_t{10}), shape_error);
}

TEST_CASE("kaiming_uniform with a = sqrt(5) is U(-1/sqrt(fan_in), 1/sqrt(fan_in))") {
  std::mt19937 rng(0);
  array<float> w(shape_t{64, 16, 3, 3});
  nn::init::kaiming_uniform(w, rng);
  const double bound = 1.0 / std::sqrt(144.0);
  double mean = 0, std = 0;
  mean_std(w, mean, std);
  for (float v : w) REQUIRE(std::abs(v) <= bound);
  CHECK(std::abs(mean) < 0.05 * bound);
  CHECK(std == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.03));  // uniform std = b / sqrt(3)
}

TEST_CASE("kaiming_normal: std = sqrt(2 / fan) for ReLU, fan_in or fan_out") {
  std::mt19937 rng(1);
  array<float> w(shape_t{64, 32, 3, 3});
  double mean = 0, std = 0;
  nn::init::kaiming_normal(w, rng);
  mean_std(w, mean, std);
  CHECK(std::abs(mean) < 0.005);
  CHECK(std == doctest::Approx(std::sqrt(2.0 / 288.0)).epsilon(0.03));
  nn::init::kaiming_normal(w, rng, nn::init::fan_mode::fan_out);
  mean_std(w, mean, std);
  CHECK(std == doctest::Approx(std::sqrt(2.0 / 576.0)).epsilon(0.03));
}

TEST_CASE("init is reproducible from the seed, and ones/zeros/bias_uniform") {
  std::mt19937 a(42), b(42);
  array<double> x(shape_t{100}), y(shape_t{100});
  nn::init::normal(x, 0.0, 1.0, a);
  nn::init::normal(y, 0.0, 1.0, b);
  CHECK(x == y);
  for (int i = 0; i < 1000; ++i) {
    const double u = nn::init::uniform01(a);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
  }
  array<float> bias(shape_t{50});
  nn::init::bias_uniform(bias, 4, a);
  for (float v : bias) CHECK(std::abs(v) <= 0.5f);
  nn::init::ones(bias);
  CHECK(bias(7) == 1.f);
  nn::init::zeros(bias);
  CHECK(bias(7) == 0.f);
}
