#include <doctest/doctest.h>

#include <cmath>
#include <numbers>

#include "xquant/optim/schedule.hpp"

using namespace xquant;

TEST_CASE("cosine_schedule: endpoints, midpoint and quarter points") {
  const optim::cosine_schedule s(0.05, 100);
  CHECK(s.lr_at(0) == 0.05);
  CHECK(s.lr_at(100) == 0.0);
  CHECK(s.lr_at(1000) == 0.0);  // no restart past the end
  CHECK(s.lr_at(50) == doctest::Approx(0.025).epsilon(1e-12));
  // (1 + cos(pi/4)) / 2 = 0.8535533905932737
  CHECK(s.lr_at(25) == doctest::Approx(0.05 * 0.8535533905932737).epsilon(1e-12));
  CHECK(s.lr_at(75) == doctest::Approx(0.05 * (1 - 0.8535533905932737)).epsilon(1e-12));
  CHECK(s.lr_at(99) > 0.0);
  for (std::size_t t = 1; t <= 100; ++t) CHECK(s.lr_at(t) <= s.lr_at(t - 1));
}

TEST_CASE("cosine_schedule with a floor") {
  const optim::cosine_schedule s(0.1, 10, 0.01);
  CHECK(s.lr_at(0) == 0.1);
  CHECK(s.lr_at(10) == 0.01);
  CHECK(s.lr_at(5) == doctest::Approx(0.055).epsilon(1e-12));
  const double t3 = 0.01 + 0.09 * (1 + std::cos(std::numbers::pi * 0.3)) / 2;
  CHECK(s.lr_at(3) == doctest::Approx(t3).epsilon(1e-12));
}

TEST_CASE("cosine_schedule per epoch equals per step at epoch boundaries") {
  const std::size_t epochs = 10, steps_per_epoch = 469;
  const optim::cosine_schedule per_epoch(0.05, epochs);
  const optim::cosine_schedule per_step(0.05, epochs * steps_per_epoch);
  for (std::size_t e = 0; e <= epochs; ++e) {
    CHECK(per_step.lr_at(e * steps_per_epoch) == doctest::Approx(per_epoch.lr_at(e)).epsilon(1e-12));
  }
}

TEST_CASE("step_schedule") {
  const optim::step_schedule s(0.1, 3, 0.5);
  CHECK(s.lr_at(0) == 0.1);
  CHECK(s.lr_at(2) == 0.1);
  CHECK(s.lr_at(3) == 0.05);
  CHECK(s.lr_at(5) == 0.05);
  CHECK(s.lr_at(6) == 0.025);
  CHECK(s.lr_at(30) == doctest::Approx(0.1 * std::pow(0.5, 10)).epsilon(1e-15));
  const optim::step_schedule constant(0.1, 1, 1.0);
  CHECK(constant.lr_at(1000) == 0.1);
}

TEST_CASE("schedule errors") {
  CHECK_THROWS_AS(optim::cosine_schedule(0.1, 0), value_error);
  CHECK_THROWS_AS(optim::cosine_schedule(-0.1, 10), value_error);
  CHECK_THROWS_AS(optim::cosine_schedule(0.1, 10, -1), value_error);
  CHECK_THROWS_AS(optim::cosine_schedule(NAN, 10), value_error);
  CHECK_THROWS_AS(optim::step_schedule(0.1, 0, 0.5), value_error);
  CHECK_THROWS_AS(optim::step_schedule(0.1, 1, -0.5), value_error);
  CHECK_THROWS_AS(optim::step_schedule(INFINITY, 1, 0.5), value_error);
  static_assert(optim::lr_schedule<optim::cosine_schedule>);
}
